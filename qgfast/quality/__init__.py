"""The quality predictor g: model, training, evaluation and the guide used by SSL."""
