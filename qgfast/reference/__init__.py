"""Plain PyTorch implementations of every kernel op, with the same signatures.

They are the oracle in tests and the backend wherever Triton or a GPU is absent.
"""
