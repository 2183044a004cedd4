"""Mask corruption ops and the variable-quality-mask (VQM) generator."""
