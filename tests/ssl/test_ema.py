import pytest
import torch
from torch import nn

from qgfast.ssl import RampedDecay, WarmupDecay, ema_update, make_teacher
from qgfast.ssl.ema import as_decay, unwrap


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1))


def _equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_update_against_hand_computation() -> None:
    student = _net()
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    student(torch.randn(4, 1, 7, 7))  # moves the student's BatchNorm statistics
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = student.state_dict()
    ema_update(teacher, student, 0.9)
    after = teacher.state_dict()
    for name, _ in student.named_parameters():
        want = 0.9 * before[name] + 0.1 * s[name]
        torch.testing.assert_close(after[name], want, rtol=0, atol=1e-6)
    for name, _ in student.named_buffers():  # copied, not averaged
        assert torch.equal(after[name], s[name])


def test_teacher_is_frozen_in_eval_and_detached_from_student() -> None:
    student = _net()
    teacher = make_teacher(student)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))


def test_alpha_zero_copies_and_one_keeps() -> None:
    student, other = _net(), _net()
    teacher = make_teacher(other)
    ema_update(teacher, student, 1.0)
    assert all(
        torch.equal(a, b) for a, b in zip(teacher.parameters(), other.parameters(), strict=True)
    )
    ema_update(teacher, student, 0.0)
    assert all(
        torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True)
    )


def test_unwraps_data_parallel() -> None:
    student = _net()
    assert unwrap(nn.DataParallel(student)) is student
    teacher = make_teacher(nn.DataParallel(student))
    assert isinstance(teacher, nn.Sequential)
    ema_update(teacher, nn.DataParallel(student), 0.5)


def test_decay_schedules() -> None:
    d = WarmupDecay(0.99)
    assert [d(n) for n in (0, 1, 3)] == [0.0, 0.5, 0.75]
    assert d(10_000) == 0.99
    r = RampedDecay(0.5, 0.999, 1000)
    assert r(0) == 0.5
    assert r(500) == pytest.approx(0.7495)
    assert r(1000) == r(5000) == 0.999
    assert as_decay(0.9)(123) == 0.9
    with pytest.raises(ValueError, match="ema_decay"):
        as_decay(1.5)
    with pytest.raises(ValueError, match="maximum"):
        WarmupDecay(1.0)


def test_mismatched_teacher_is_refused() -> None:
    with pytest.raises(ValueError, match="teacher and student parameters differ"):
        ema_update(make_teacher(nn.Linear(2, 2)), _net(), 0.5)
