"""Plain PyTorch definitions of the ops the Triton kernels fuse, one module per kernel
module (``seg_stats``, ``morphology``, ``blobs``; see docs/architecture.md).

They are the oracle in tests and the backend wherever Triton or a GPU is absent. A
reference takes the op's arguments in the form the public API checks them into (tensors on
their device, a ``StatsSpec``, per-sample radii), not necessarily the launcher's own
signature: kernels take extra layout arguments (block sizes, strides) that a definition
does not need.
"""
