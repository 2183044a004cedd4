"""Atomic checkpoint writes: a crash or a full disk leaves the previous file, and the
predictor's checkpoints go through the same path as the trainer's."""

from __future__ import annotations

import pytest
import torch

from qgfast import _atomic
from qgfast.quality.checkpoint import read_checkpoint, save_checkpoint


def test_writes_and_replaces(tmp_path) -> None:
    path = tmp_path / "a.pt"
    _atomic.atomic_torch_save({"x": 1}, path)
    _atomic.atomic_torch_save({"x": 2}, path)
    assert torch.load(path, weights_only=True) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_a_crash_before_the_rename_keeps_the_old_predictor_checkpoint(
    tmp_path, monkeypatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash(tmp, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic, "_rename", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    assert read_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_raises_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.pt"
    _atomic.atomic_torch_save({"x": 1}, path)

    def full_disk(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _atomic.atomic_torch_save({"x": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
