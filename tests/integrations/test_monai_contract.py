"""MONAI's own loss contract, checked against MONAI itself after ``patch()``.

The behaviours MONAI's tests pin for ``DiceLoss`` / ``DiceCELoss`` (and the ``Dice`` /
``dice_ce`` aliases): values for every option, which exception a bad call raises (MONAI
raises AssertionError for some shape mismatches, ValueError for others), the
single-channel warnings, TorchScript and torch.export. Each case runs MONAI's unpatched
class as the oracle, then the patched one (value cases on both qgfast backends: the
reference and the Triton kernels, interpreted on CPU).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch

pytest.importorskip("monai")
import monai.losses

import qgfast.integrations.monai as qm
from qgfast import losses

DICE_OPTIONS = [
    {},
    {"sigmoid": True},
    {"sigmoid": True, "smooth_nr": 1e-6, "smooth_dr": 1e-6},
    {"sigmoid": True, "squared_pred": True},
    {"sigmoid": True, "jaccard": True},
    {"softmax": True, "to_onehot_y": True},
    {"softmax": True, "to_onehot_y": True, "reduction": "sum"},
    {"softmax": True, "to_onehot_y": True, "reduction": "none"},
    {"softmax": True, "to_onehot_y": True, "include_background": False},
    {"to_onehot_y": True, "include_background": False, "smooth_nr": 0, "smooth_dr": 0},
    {"softmax": True, "to_onehot_y": True, "batch": True},
    {"softmax": True, "to_onehot_y": True, "smooth_nr": 0, "smooth_dr": 1e-4, "batch": True},
    {"softmax": True, "to_onehot_y": True, "weight": (0.0, 1.0, 2.0)},
    {"softmax": True, "to_onehot_y": True, "weight": 0.5},
    {"softmax": True, "to_onehot_y": True, "weight": torch.tensor([1.0, 1.0, 3.0])},
    {"soft_label": True},
    {"soft_label": False},
    {"soft_label": True, "squared_pred": True, "jaccard": True},
]

CE_OPTIONS = [
    {"to_onehot_y": True},
    {"to_onehot_y": True, "softmax": True},
    {"to_onehot_y": True, "include_background": False, "weight": torch.tensor([1.0, 1.0, 2.0])},
    {"to_onehot_y": True, "weight": torch.tensor([0.0, 1.0, 1.0]), "lambda_ce": 2.0},
    {"to_onehot_y": True, "lambda_dice": 0.0},
    {"to_onehot_y": True, "softmax": True, "reduction": "sum", "batch": True},
    {"to_onehot_y": True, "softmax": True, "jaccard": True, "squared_pred": True},
]


@pytest.fixture
def patched():
    qm.patch()
    yield
    qm.unpatch()


def _both(name: str, **options):
    """(MONAI's loss, the patched loss) built with the same options."""
    original = getattr(monai.losses, name)(**options)
    qm.patch()
    try:
        fast = getattr(monai.losses, name)(**options)
    finally:
        qm.unpatch()
    assert isinstance(fast, losses.DiceLoss | losses.DiceCELoss), "patched class not used"
    return original, fast


def _inputs(options: dict, channels: int, spatial: tuple[int, ...], seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, *spatial, generator=g)
    if options.get("to_onehot_y"):
        y = torch.randint(0, channels, (2, 1, *spatial), generator=g).float()
    elif options.get("soft_label") is not None:
        x = torch.rand(2, channels, *spatial, generator=g)
        y = torch.rand(2, channels, *spatial, generator=g)
    else:
        y = (torch.rand(2, channels, *spatial, generator=g) > 0.5).float()
    return x, y


@pytest.mark.parametrize("name", ["DiceLoss", "Dice"])
@pytest.mark.parametrize("spatial", [(7,), (5, 3)])
@pytest.mark.parametrize("options", DICE_OPTIONS, ids=str)
def test_dice_values_match_monai(name, options, spatial, backend):
    channels = 1 if options.get("sigmoid") or "soft_label" in options or not options else 3
    x, y = _inputs(options, channels, spatial, seed=len(str(options)))
    original, fast = _both(name, **options)
    torch.testing.assert_close(fast(x, y), original(x, y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["DiceCELoss", "dice_ce"])
@pytest.mark.parametrize("options", CE_OPTIONS, ids=str)
def test_dice_ce_values_match_monai(name, options, backend):
    x, y = _inputs(options, 3, (6, 5), seed=len(str(options)))
    original, fast = _both(name, **options)
    torch.testing.assert_close(fast(x, y), original(x, y), rtol=1e-5, atol=1e-6)


def test_dice_ce_one_hot_uint8_and_binary_pos_weight_match_monai(backend):
    x = torch.randn(2, 2, 5)
    y = torch.nn.functional.one_hot(torch.randint(0, 2, (2, 5)), 2).movedim(-1, 1)
    original, fast = _both("DiceCELoss")
    torch.testing.assert_close(fast(x, y.to(torch.uint8)), original(x, y.to(torch.uint8)))
    # one channel: BCE with logits, the weight as pos_weight
    x1, y1 = torch.randn(2, 1, 5), (torch.rand(2, 1, 5) > 0.5).float()
    original, fast = _both("DiceCELoss", weight=torch.tensor([0.5]), sigmoid=True)
    torch.testing.assert_close(fast(x1, y1), original(x1, y1))


BAD_CALLS = [
    # (loss, options, input shape, target shape): MONAI's exception type is the contract
    ("DiceLoss", {}, (1, 2, 3), (4, 5, 6)),
    ("DiceLoss", {}, (1, 3, 4, 4), (1, 2, 4, 4)),
    ("DiceLoss", {}, (2, 3, 4), (2, 1, 4)),
    ("DiceLoss", {"to_onehot_y": True}, (1, 3, 4), (1, 1, 5)),
    ("DiceCELoss", {}, (1, 2, 3), (1, 2, 5)),
    ("DiceCELoss", {}, (1, 2, 3), (1, 1, 2, 3)),
    ("DiceCELoss", {}, (1, 3, 4, 4), (1, 2, 4, 4)),
]


def _raised(fn) -> type[BaseException]:
    try:
        fn()
    except Exception as exc:  # the type is what is recorded
        return type(exc)
    raise AssertionError("MONAI accepted a call this test expects it to refuse")


@pytest.mark.usefixtures("patched")
@pytest.mark.parametrize(("name", "options", "shape", "target"), BAD_CALLS, ids=str)
def test_bad_shapes_raise_what_monai_raises(name, options, shape, target):
    original = qm.original_monai_class(name)
    expected = _raised(lambda: original(**options)(torch.ones(shape), torch.ones(target)))
    loss = getattr(monai.losses, name)(**options)
    assert isinstance(loss, losses.DiceLoss | losses.DiceCELoss)
    with pytest.raises(expected) as info:
        loss(torch.ones(shape), torch.ones(target))
    assert isinstance(info.value, ValueError)  # qgfast's own contract holds as well
    assert str(tuple(shape)) in str(info.value) or "shape" in str(info.value)


@pytest.mark.usefixtures("patched")
@pytest.mark.parametrize(
    "options", [{"sigmoid": True, "softmax": True}, {"reduction": "unknown"}, {"reduction": None}]
)
def test_bad_options_raise_value_error_as_monai_does(options):
    with pytest.raises(ValueError):  # noqa: PT011 - MONAI's contract is the type
        monai.losses.DiceLoss(**options)(torch.ones(1, 1, 3), torch.ones(1, 1, 3))


@pytest.mark.usefixtures("patched")
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"include_background": False}, "include_background"),
        ({"softmax": True}, "softmax"),
        ({"to_onehot_y": True}, "to_onehot_y"),
    ],
)
def test_single_channel_options_warn_as_monai_does(options, match):
    loss = monai.losses.DiceLoss(**options)
    assert isinstance(loss, losses.DiceLoss)
    with pytest.warns(UserWarning, match=match):
        loss(torch.ones(1, 1, 3), torch.ones(1, 1, 3))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("DiceLoss", {"other_act": torch.tanh, "to_onehot_y": True}),
        ("DiceLoss", {"to_onehot_y": True, "softmax": True, "ignore_index": 2}),
        ("DiceCELoss", {"to_onehot_y": True, "label_smoothing": 0.1}),
    ],
)
def test_unfused_options_fall_back_to_monai_with_the_same_values(name, options):
    x = torch.randn(2, 3, 4, 5)
    y = torch.randint(0, 3, (2, 1, 4, 5))
    want = getattr(monai.losses, name)(**options)(x, y)
    qm.patch()
    try:
        with pytest.warns(UserWarning, match="using MONAI's"):
            loss = getattr(monai.losses, name)(**options)
        got = loss(x, y)
    finally:
        qm.unpatch()
    assert not isinstance(loss, losses.DiceLoss | losses.DiceCELoss)
    torch.testing.assert_close(got, want)


@pytest.mark.usefixtures("patched")
@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("DiceLoss", {}, (2, 1, 8, 8)),
        ("DiceCELoss", {"softmax": True, "weight": torch.tensor([1.0, 2.0])}, (2, 2, 8, 8)),
    ],
)
def test_torchscript_compiles_monais_class_with_the_same_options(name, options, shape):
    loss = getattr(monai.losses, name)(**options)
    assert isinstance(loss, losses.DiceLoss | losses.DiceCELoss)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # jit's own deprecation
        with pytest.warns(UserWarning, match="not scriptable; compiling MONAI's"):
            scripted = torch.jit.script(loss)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        reloaded = torch.jit.load(buffer)
    x, y = torch.rand(shape), (torch.rand(shape) > 0.5).float()
    torch.testing.assert_close(reloaded(x, y), loss(x, y))


def test_scripting_without_monai_says_what_to_do(monkeypatch):
    def missing(name):
        raise ImportError("No module named 'monai'")

    monkeypatch.setattr(qm, "original_monai_class", missing)
    with pytest.raises(RuntimeError, match=r"TorchScript cannot compile.*torch\.export"):
        losses.DiceLoss().__prepare_scriptable__()


@pytest.mark.usefixtures("patched")
def test_torch_export_traces_the_patched_dice_ce():
    loss = monai.losses.DiceCELoss()
    x, y = torch.randn(2, 2, 8, 8), (torch.rand(2, 2, 8, 8) > 0.5).float()
    program = torch.export.export(loss, (x, y))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    reloaded = torch.export.load(buffer)
    x2, y2 = torch.randn(2, 2, 8, 8), (torch.rand(2, 2, 8, 8) > 0.5).float()
    torch.testing.assert_close(reloaded.module()(x2, y2), loss(x2, y2))
