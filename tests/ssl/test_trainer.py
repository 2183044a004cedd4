"""The Trainer: every method through it, checkpoints that survive crashes, exact resume,
signals, non-finite losses, validation-driven best.pt and early stopping (CPU, tiny nets)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from qgfast import _atomic
from qgfast.ssl.checkpoint import CheckpointError, load_checkpoint
from qgfast.ssl.methods import METHODS, build_framework, needs_guide
from qgfast.ssl.trainer import NonFiniteLoss, Trainer, TrainerConfig
from tests.ssl.helpers import TinyNet, ToyStream, guide


def make(method="mt-qw", dims=2, steps_per_epoch=3, seed=0, classes=2, **stream_kw):
    torch.manual_seed(seed)
    model = TinyNet(dims, 1, classes, dropout=0.3)  # dropout draws from the global RNG
    extra = {"anchors": 16} if method.startswith("cl") else {}
    fw = build_framework(
        method,
        model,
        guide(dims, num_classes=classes) if needs_guide(method) else None,
        total_steps=12,
        steps_per_epoch=steps_per_epoch,
        **extra,
    )
    return fw, ToyStream(dims, steps=steps_per_epoch, **stream_kw)


def config(**kw):
    base = {"max_steps": 4, "progress": False, "tensorboard": False, "log_every": 1}
    return TrainerConfig(**(base | kw))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_writes_a_loadable_checkpoint(method, tmp_path) -> None:
    fw, stream = make(method)
    before = [p.detach().clone() for p in fw.models[0].parameters()]
    result = Trainer(fw, stream, out_dir=tmp_path, config=config(max_steps=3)).fit()
    assert result["stopped"] == "budget"
    assert result["steps"] == 3
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 3
    assert state["framework"]["global_step"] == 3
    assert len(state["models"]) == len(fw.models) == len(state["optimizers"])
    assert (state["framework"]["teacher"] is None) == (fw.teacher is None)
    after = list(fw.models[0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def _run(tmp_path, steps, stop_at=None, resume=False, stream=None, **kw):
    fw, toy = make(**kw)
    stream = toy if stream is None else stream()
    losses = {}

    def record(trainer, out):
        losses[trainer.step] = float(out["loss"].detach())
        if stop_at is not None and trainer.step == stop_at:
            trainer.request_stop()

    trainer = Trainer(
        fw,
        stream,
        out_dir=tmp_path,
        config=config(max_steps=steps, deterministic=True, checkpoint_every=100),
        callbacks=[record],
    )
    result = trainer.fit(resume=resume)
    return result, losses, [p.detach().clone() for m in fw.models for p in m.parameters()], fw


@pytest.mark.parametrize("method", ["mt-qw", "cps-qw", "ua-mt"])
def test_resume_after_a_kill_matches_an_uninterrupted_run_step_for_step(method, tmp_path) -> None:
    _, straight, w_straight, fw_a = _run(tmp_path / "a", 7, method=method)
    first, part1, _, _ = _run(tmp_path / "b", 7, stop_at=4, method=method)
    assert first["stopped"] == "interrupted"
    assert first["steps"] == 4
    second, part2, w_resumed, fw_b = _run(tmp_path / "b", 7, resume=True, method=method)
    assert second["steps"] == 7
    assert sorted(part2) == [5, 6, 7]
    assert {**part1, **part2} == straight  # same losses, exactly
    assert all(torch.equal(a, b) for a, b in zip(w_straight, w_resumed, strict=True))
    if fw_a.teacher is not None:
        ta, tb = fw_a.teacher.state_dict(), fw_b.teacher.state_dict()
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_re_enters_a_volume_stream_epoch_at_the_same_batch(tmp_path) -> None:
    from qgfast.data import VolumeStream, find_cases, make_synthetic_dataset

    root = make_synthetic_dataset("organ3d", 4, tmp_path / "data", size=(12, 12, 10))
    cases = [
        {"images": c.images, "label": c.label if i < 2 else None}
        for i, c in enumerate(find_cases(root))
    ]

    def stream():  # 2 labelled cases x 2 samples / batch 1: 4 steps per epoch
        return VolumeStream(
            cases,
            (8, 8, 8),
            labeled_batch_size=1,
            unlabeled_batch_size=1,
            samples_per_volume=2,
            seed=3,
            threads=1,
        )

    kw = {"method": "mt", "dims": 3, "classes": 4, "stream": stream}
    _, straight, w_straight, _ = _run(tmp_path / "a", 7, **kw)
    _run(tmp_path / "b", 7, stop_at=2, **kw)  # stopped inside the first epoch
    _, part2, w_resumed, _ = _run(tmp_path / "b", 7, resume=True, **kw)
    assert {k: straight[k] for k in part2} == part2
    assert sorted(part2) == [3, 4, 5, 6, 7]
    assert all(torch.equal(a, b) for a, b in zip(w_straight, w_resumed, strict=True))


def test_a_crash_between_write_and_rename_leaves_the_previous_checkpoint(
    tmp_path, monkeypatch
) -> None:
    fw, stream = make("mt")
    trainer = Trainer(fw, stream, out_dir=tmp_path, config=config(max_steps=2))
    trainer.fit()
    before = (tmp_path / "last.pt").read_bytes()

    def crash(tmp, path):
        raise KeyboardInterrupt  # the process dies between the write and the rename

    monkeypatch.setattr(_atomic, "_rename", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save("last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_full_disk_leaves_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch) -> None:
    fw, stream = make("mt")
    trainer = Trainer(fw, stream, out_dir=tmp_path, config=config(max_steps=2))
    trainer.fit()
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left.*previous checkpoint is intact"):
        trainer.save("last.pt")
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_damaged_and_foreign_checkpoints_are_refused_clearly(tmp_path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a qgfast training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_sigint_writes_last_and_ends_cleanly(tmp_path) -> None:
    fw, stream = make("mt")

    def interrupt(trainer, out):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(
        fw, stream, out_dir=tmp_path, config=config(max_steps=9), callbacks=[interrupt]
    )
    result = trainer.fit()
    assert result["stopped"] == "interrupted"
    assert result["signal"] == signal.SIGINT
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_non_finite_loss_stops_naming_the_step_or_is_skipped(tmp_path) -> None:
    fw, stream = make("mt", nan_at=(0, 1))
    with pytest.raises(NonFiniteLoss, match=r"step 2 \(epoch 0\).*sup=nan"):
        Trainer(fw, stream, out_dir=tmp_path / "a", config=config()).fit()
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 1  # the state before it
    fw, stream = make("mt", nan_at=(0, 1))
    result = Trainer(fw, stream, out_dir=tmp_path / "b", config=config(skip_nonfinite=True)).fit()
    assert result["skipped_nonfinite"] == 1
    assert result["steps"] == 4
    assert all(torch.isfinite(p).all() for p in fw.model.parameters())


def test_best_checkpoint_follows_validation_and_early_stopping_counts_validations(
    tmp_path,
) -> None:
    scores = iter([0.2, 0.6, 0.5, 0.4, 0.9])
    fw, stream = make("sup")
    trainer = Trainer(
        fw,
        stream,
        out_dir=tmp_path,
        config=config(max_steps=10, val_every=2, patience=2),
        validator=lambda model: {"dice": next(scores)},
    )
    result = trainer.fit()
    assert result["stopped"] == "early-stop"
    assert result["steps"] == 8
    assert result["best"]["step"] == 4
    assert result["best"]["metric"] == 0.6
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 4
    assert "optimizers" not in best
    assert [r["dice"] for r in result["history"]] == [0.2, 0.6, 0.5, 0.4]
    assert (tmp_path / "history.jsonl").read_text().count("\n") == 4


def test_epoch_budget_and_epoch_ramps_follow_the_labeled_stream(tmp_path) -> None:
    fw, stream = make("mt", steps_per_epoch=3)
    fw.steps_per_epoch = None  # the trainer tells the framework the epoch instead
    seen = []
    trainer = Trainer(
        fw,
        stream,
        out_dir=tmp_path,
        config=config(max_steps=None, epochs=2),
        callbacks=[lambda t, out: seen.append(fw.epoch)],
    )
    assert trainer.fit()["steps"] == 6
    assert seen == [0, 0, 0, 1, 1, 1]


def test_bad_trainer_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        TrainerConfig(epochs=None, max_steps=None)
    with pytest.raises(ValueError, match="amp"):
        TrainerConfig(amp="fp8")
    fw, _ = make("mt")
    with pytest.raises(ValueError, match="len"):
        Trainer(fw, iter([]), out_dir="x", config=TrainerConfig(epochs=2))
