"""Semi-supervised frameworks (PL, MT, CPS, ...), quality guidance, ramps and trainer."""
