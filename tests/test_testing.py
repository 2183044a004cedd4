"""The tolerance helper accepts what meets the rule and rejects what does not; a helper
that cannot fail would make every kernel test meaningless."""

import math

import pytest
import torch

from qgfast import testing


def _softmax_sum(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(x.float(), dim=-1) * w.float()).sum(-1).to(x.dtype)


def test_scaled_error_basics() -> None:
    t = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    assert testing.scaled_error(t, t) == 0.0
    assert testing.scaled_error(t + 0.4, t) == pytest.approx(0.1)
    assert testing.scaled_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert testing.scaled_error(torch.full((3,), 1e-3), torch.zeros(3)) == pytest.approx(1e-3)
    assert testing.scaled_error(t[:2], t) == math.inf


def test_nonfinite_values_must_match_the_truth() -> None:
    t = torch.tensor([1.0, float("nan"), float("inf")])
    assert testing.scaled_error(t.clone(), t) == 0.0
    assert testing.scaled_error(torch.tensor([1.0, 0.0, float("inf")]), t) == math.inf
    assert (
        testing.scaled_error(torch.tensor([float("nan"), float("nan"), float("inf")]), t)
        == math.inf
    )
    assert testing.scaled_error(torch.tensor([1.0, float("nan"), -float("inf")]), t) == math.inf


def test_tolerances_follow_design() -> None:
    assert testing.tolerance_for(torch.float32) == 5e-4
    assert testing.tolerance_for(torch.bfloat16) == 1e-2
    with pytest.raises(ValueError, match="int64"):
        testing.tolerance_for(torch.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_identical_implementation_passes(dtype: torch.dtype) -> None:
    x = torch.randn(3, 7, dtype=dtype)
    w = torch.randn(3, 7, dtype=dtype)
    results = testing.assert_matches_reference(_softmax_sum, _softmax_sum, [x, w])
    assert [r.what for r in results] == ["output[0]", "grad[0]", "grad[1]"]


def test_wrong_values_fail() -> None:
    x, w = torch.randn(3, 7), torch.randn(3, 7)

    def off_by_a_bit(x, w):
        return _softmax_sum(x, w) + 1e-2

    with pytest.raises(AssertionError, match=r"output\[0\].*FAILS"):
        testing.assert_matches_reference(off_by_a_bit, _softmax_sum, [x, w])


def test_wrong_gradient_fails_even_when_values_match() -> None:
    x, w = torch.randn(3, 7), torch.randn(3, 7)

    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return _softmax_sum(x, w)

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            with torch.enable_grad():
                xd, wd = x.detach().requires_grad_(), w.detach().requires_grad_()
                gx, gw = torch.autograd.grad(_softmax_sum(xd, wd), (xd, wd), g)
            return gx * 1.01, gw  # 1 % too large

    with pytest.raises(AssertionError, match=r"grad\[0\].*FAILS"):
        testing.assert_matches_reference(WrongGrad.apply, _softmax_sum, [x, w])


def test_low_precision_kernel_may_be_as_bad_as_the_reference_but_no_worse() -> None:
    x = torch.randn(4, 33, dtype=torch.bfloat16)
    w = torch.randn(4, 33, dtype=torch.bfloat16)

    def bf16_accumulation(x, w):  # worse than fp32 accumulation, but within 1e-2
        return (torch.softmax(x, dim=-1) * w).sum(-1)

    testing.assert_matches_reference(bf16_accumulation, _softmax_sum, [x, w], grad=False)

    def badly_rounded(x, w):
        return _softmax_sum(x, w) * 1.05

    with pytest.raises(AssertionError):
        testing.assert_matches_reference(badly_rounded, _softmax_sum, [x, w], grad=False)


def test_missing_gradient_is_reported() -> None:
    x, w = torch.randn(2, 5), torch.randn(2, 5)

    def detached_w(x, w):
        return _softmax_sum(x, w.detach())

    with pytest.raises(AssertionError, match="defined for some runs only"):
        testing.assert_matches_reference(detached_w, _softmax_sum, [x, w])


def test_non_tensor_output_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="tensor or a tuple"):
        testing.assert_matches_reference(lambda x: 3, lambda x: x, [torch.zeros(1)])


def test_differentiable_restricts_gradients_to_chosen_inputs() -> None:
    x, w = torch.randn(2, 5), torch.randn(2, 5)

    def refuses_grad_of_w(x, w):
        assert not w.requires_grad
        return _softmax_sum(x, w)

    results = testing.assert_matches_reference(
        refuses_grad_of_w, refuses_grad_of_w, [x, w], differentiable=[0]
    )
    assert [r.what for r in results] == ["output[0]", "grad[0]"]
