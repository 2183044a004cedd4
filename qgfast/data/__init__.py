"""Data loading: the Python face of the Rust NIfTI/image streamer, and synthetic data."""
