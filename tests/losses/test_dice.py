"""DiceLoss / DiceCELoss equal MONAI's on the same inputs: values and gradients, by the
tolerance rule against MONAI in float64, over a hypothesis-generated grid of options,
shapes and target kinds, on both backends."""

import warnings

import pytest
import torch

from qgfast.losses import DiceCELoss, DiceLoss
from qgfast.testing import assert_matches_reference

monai_losses = pytest.importorskip("monai.losses")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@st.composite
def cases(draw, for_dice_ce: bool):
    c = draw(st.integers(1, 5))
    b = draw(st.integers(1, 4))
    spatial = draw(st.lists(st.integers(1, 9), min_size=2, max_size=3))
    act = draw(st.sampled_from(["none", "sigmoid", "softmax"]))
    include_background = draw(st.booleans())
    target_kind = "binary" if c == 1 else draw(st.sampled_from(["labels", "onehot", "soft"]))
    opts = {
        "include_background": include_background,
        "to_onehot_y": target_kind == "labels",
        "sigmoid": act == "sigmoid",
        "softmax": act == "softmax",
        "squared_pred": draw(st.booleans()),
        "jaccard": draw(st.booleans()),
        "batch": draw(st.booleans()),
        "smooth_nr": draw(st.sampled_from([1e-5, 0.0, 1.0])),
        "smooth_dr": draw(st.sampled_from([1e-5, 1.0])),
    }
    reductions = ["mean", "sum"] if for_dice_ce else ["mean", "sum", "none"]
    opts["reduction"] = draw(st.sampled_from(reductions))
    if for_dice_ce:
        opts["lambda_dice"] = draw(st.sampled_from([1.0, 0.5, 0.0]))
        opts["lambda_ce"] = draw(st.sampled_from([1.0, 0.3]))
    elif target_kind == "soft":
        opts["soft_label"] = draw(st.booleans())
    if draw(st.booleans()):
        n_weights = c if (for_dice_ce or include_background or c == 1) else c - 1
        opts["weight"] = torch.tensor(
            draw(st.lists(st.floats(0.1, 3.0), min_size=n_weights, max_size=n_weights))
        )
    seed = draw(st.integers(0, 2**16))
    return c, b, spatial, target_kind, opts, seed


def _tensors(c, b, spatial, target_kind, seed):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(b, c, *spatial, generator=g)
    if target_kind == "binary":
        t = torch.randint(0, 2, (b, 1, *spatial), generator=g).float()
    elif target_kind == "labels":
        t = torch.randint(0, c, (b, 1, *spatial), generator=g)
    elif target_kind == "onehot":
        t = torch.nn.functional.one_hot(torch.randint(0, c, (b, *spatial), generator=g), c)
        t = t.movedim(-1, 1).float()
    else:
        t = torch.softmax(torch.randn(b, c, *spatial, generator=g), 1)
    return x, t


def _compare(ours, theirs, x, t) -> None:
    def monai_in_input_dtype(x, t):  # MONAI's CE needs its class weights in the input dtype
        return theirs.to(x.dtype)(x, t)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's single-channel warnings
        assert_matches_reference(ours, monai_in_input_dtype, [x, t], differentiable=[0])


@hypothesis.given(cases(for_dice_ce=False))
def test_dice_loss_matches_monai(backend, case) -> None:
    c, b, spatial, target_kind, opts, seed = case
    x, t = _tensors(c, b, spatial, target_kind, seed)
    ours = DiceLoss(**opts)
    theirs = monai_losses.DiceLoss(**opts)
    _compare(ours, theirs, x, t)


@hypothesis.given(cases(for_dice_ce=True))
def test_dice_ce_loss_matches_monai(backend, case) -> None:
    c, b, spatial, target_kind, opts, seed = case
    if target_kind == "soft" or target_kind == "onehot":
        opts = {**opts, "to_onehot_y": False}
    x, t = _tensors(c, b, spatial, target_kind, seed)
    ours = DiceCELoss(**opts)
    theirs = monai_losses.DiceCELoss(**opts)
    _compare(ours, theirs, x, t)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_match_monai_in_float64(backend, dtype) -> None:
    x = (2 * torch.randn(2, 3, 9, 7, 5)).to(dtype)
    t = torch.randint(0, 3, (2, 1, 9, 7, 5))
    opts = {"to_onehot_y": True, "softmax": True}
    _compare(DiceCELoss(**opts), monai_losses.DiceCELoss(**opts), x, t)
    assert DiceCELoss(**opts)(x, t).dtype == torch.float32


def test_uint8_and_float_label_maps_are_accepted_like_monai(backend) -> None:
    x = torch.randn(2, 3, 7, 6)
    t = torch.randint(0, 3, (2, 1, 7, 6))
    ours = DiceCELoss(to_onehot_y=True, softmax=True)
    want = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True)(x, t)
    for labels in (t.to(torch.uint8), t.float(), t.int()):
        torch.testing.assert_close(ours(x, labels), want)


def test_empty_and_full_targets(backend) -> None:
    x = torch.randn(2, 2, 5, 5)
    for t in (torch.zeros(2, 1, 5, 5, dtype=torch.long), torch.ones(2, 1, 5, 5, dtype=torch.long)):
        opts = {"to_onehot_y": True, "softmax": True, "include_background": False}
        _compare(DiceLoss(**opts), monai_losses.DiceLoss(**opts), x, t)


def test_reduction_none_shape(backend) -> None:
    x = torch.randn(3, 4, 5, 6, 7)
    t = torch.randint(0, 4, (3, 1, 5, 6, 7))
    out = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, reduction="none")(x, t)
    assert out.shape == (3, 3, 1, 1, 1)


def test_non_contiguous_and_channels_last(backend) -> None:
    x = torch.randn(2, 3, 8, 10).to(memory_format=torch.channels_last)
    t = torch.randint(0, 3, (2, 1, 8, 10))
    opts = {"to_onehot_y": True, "softmax": True}
    _compare(DiceCELoss(**opts), monai_losses.DiceCELoss(**opts), x, t)
    wide = torch.randn(2, 3, 8, 20)[..., ::2]  # strided spatial axis: copied, still right
    _compare(DiceCELoss(**opts), monai_losses.DiceCELoss(**opts), wide, t)


def test_single_channel_warnings_like_monai() -> None:
    x, t = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 1, 4, 4))
    with pytest.warns(UserWarning, match="softmax=True` ignored"):
        DiceLoss(softmax=True)(x, t)
    with pytest.warns(UserWarning, match="to_onehot_y=True` ignored"):
        DiceLoss(to_onehot_y=True)(x, t)
    with pytest.warns(UserWarning, match="include_background=False` ignored"):
        DiceLoss(include_background=False)(x, t)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"other_act": torch.tanh}, NotImplementedError, "other_act"),
        ({"ignore_index": 255}, NotImplementedError, "ignore_index"),
        ({"sigmoid": True, "softmax": True}, ValueError, "Incompatible values"),
        ({"reduction": "max"}, ValueError, "Unsupported reduction"),
        ({"weight": [1.0, -1.0]}, ValueError, "no less than 0"),
    ],
)
def test_constructor_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        DiceLoss(**kwargs)


def test_dice_ce_constructor_errors() -> None:
    with pytest.raises(NotImplementedError, match="label_smoothing"):
        DiceCELoss(label_smoothing=0.1)
    with pytest.raises(ValueError, match="reduction"):
        DiceCELoss(reduction="none")
    with pytest.raises(ValueError, match="lambda_ce"):
        DiceCELoss(lambda_ce=-1.0)


def test_input_errors_name_the_problem(backend) -> None:
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match="number of dimensions"):
        loss(x, torch.zeros(2, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="spatial shapes differ"):
        loss(x, torch.zeros(2, 1, 6, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="batch sizes differ"):
        loss(x, torch.zeros(3, 1, 6, 6, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"target has labels in \[3, 3\] but 3 channel\(s\) allow \[0, 2\]"
    ):
        loss(x, torch.full((2, 1, 6, 6), 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels in \[-1, -1\]"):
        loss(x, torch.full((2, 1, 6, 6), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="neither 1"):
        loss(x, torch.zeros(2, 2, 6, 6))
    with pytest.raises(TypeError, match="floating point"):
        loss(torch.zeros(2, 3, 6, 6, dtype=torch.long), torch.zeros(2, 1, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="to_onehot_y=True"):
        DiceLoss(softmax=True)(x, torch.zeros(2, 1, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="meta"):
        loss(x, torch.zeros(2, 1, 6, 6, dtype=torch.long, device="meta"))
    with pytest.raises(NotImplementedError, match="detach"):
        DiceLoss(softmax=True)(x, torch.rand(2, 3, 6, 6, requires_grad=True))


def test_validate_false_skips_the_label_check(backend) -> None:
    x = torch.randn(1, 2, 4, 4)
    bad = torch.full((1, 1, 4, 4), 7, dtype=torch.long)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, validate=False)
    if backend == "triton":  # no check, no crash: the label contributes no overlap
        assert torch.isfinite(loss(x, bad))
    else:  # the reference's one-hot still refuses it
        with pytest.raises(RuntimeError):
            loss(x, bad)
