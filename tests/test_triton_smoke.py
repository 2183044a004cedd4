"""The Triton toolchain works where the tests run: compiled on CUDA, interpreted on CPU.

A tiny fused multiply-add kernel with a masked tail; if this fails, every kernel test
would fail for the same environmental reason, so it is checked on its own first.
"""

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@triton.jit
def _axpy_kernel(p_x, p_y, p_out, a, N, BLOCK: tl.constexpr):
    i_b = tl.program_id(0)
    o_n = i_b * BLOCK + tl.arange(0, BLOCK)
    m_n = o_n < N
    b_x = tl.load(p_x + o_n, mask=m_n)
    b_y = tl.load(p_y + o_n, mask=m_n)
    tl.store(p_out + o_n, a * b_x + b_y, mask=m_n)


@pytest.mark.parametrize("n", [1, 17, 300])
def test_axpy_matches_torch(device: torch.device, n: int) -> None:
    x = torch.randn(n, device=device)
    y = torch.randn(n, device=device)
    out = torch.empty_like(x)
    block = 128
    _axpy_kernel[(triton.cdiv(n, block),)](x, y, out, 2.5, n, BLOCK=block)
    torch.testing.assert_close(out, 2.5 * x + y)


@pytest.mark.gpu
def test_cuda_and_triton_are_seen() -> None:
    import qgfast

    report = qgfast.info()
    assert report["devices"]["cuda_available"] is True
    assert report["backends"]["triton"] is True
    assert report["native"]["available"] is True, report["native"]
