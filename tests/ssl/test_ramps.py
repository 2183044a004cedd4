import math

import pytest

from qgfast.ssl import ConstantRamp, LinearRamp, SigmoidRamp
from qgfast.ssl.ramps import as_ramp, paper_qar_ramp, paper_unsupervised_ramp


def test_linear_ramp_boundaries() -> None:
    r = LinearRamp(0.25, warmup=15, length=30, unit="epoch")
    at = [r(step=0, epoch=e) for e in (0, 14, 15, 30, 45, 46, 1000)]
    assert at == [0.0, 0.0, 0.0, 0.125, 0.25, 0.25, 0.25]


def test_linear_ramp_counts_steps_in_groups() -> None:
    r = LinearRamp(1.0, warmup=2, length=4, unit="step", every=10)
    assert r(step=19, epoch=None) == 0.0  # group 1 < warmup
    assert r(step=40, epoch=None) == 0.5  # group 4: (4 - 2) / 4
    assert r(step=60, epoch=None) == 1.0


def test_linear_ramp_without_length_jumps_at_warmup() -> None:
    r = LinearRamp(0.3, warmup=5, unit="step")
    assert r(step=4, epoch=None) == 0.0
    assert r(step=5, epoch=None) == 0.3


def test_sigmoid_ramp_matches_ssl4mis_formula() -> None:
    r = SigmoidRamp(0.1, length=200, unit="step", every=150)
    for step in (0, 149, 150, 15_000, 29_999, 30_000, 90_000):
        t = min(step // 150, 200)
        want = 0.1 * math.exp(-5.0 * (1.0 - t / 200) ** 2)
        assert r(step=step, epoch=None) == pytest.approx(want, rel=1e-12)
    assert r(step=0, epoch=None) == pytest.approx(0.1 * math.exp(-5.0))
    assert r(step=10**9, epoch=None) == 0.1


def test_constant_and_numbers() -> None:
    assert ConstantRamp(0.2)(step=7, epoch=None) == 0.2
    assert as_ramp(0.5, "x")(step=0, epoch=None) == 0.5
    with pytest.raises(TypeError, match="x must be a ramp"):
        as_ramp("fast", "x")


def test_paper_defaults() -> None:
    assert paper_unsupervised_ramp(0.25) == LinearRamp(0.25, 15, 30, "epoch")
    qar = paper_qar_ramp()
    assert qar(step=0, epoch=30) == 0.0
    assert qar(step=0, epoch=70) == 0.01


def test_epoch_ramp_without_an_epoch_says_how_to_give_one() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch="):
        LinearRamp(1.0, 1, 1)(step=3, epoch=None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"final": -1.0}, "final"),
        ({"final": 1.0, "warmup": -2}, "warmup"),
        ({"final": 1.0, "length": float("nan")}, "length"),
        ({"final": 1.0, "unit": "minute"}, "unit"),
        ({"final": 1.0, "every": 0}, "every"),
    ],
)
def test_bad_ramps_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        LinearRamp(**kwargs)
