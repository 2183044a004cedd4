"""Triton kernels and their host launchers, one module per op family.

Importing this package never imports triton; each op module does, so CPU-only users pay
nothing. Every op here has a plain PyTorch twin in ``qgfast.reference``.
"""
