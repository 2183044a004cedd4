"""qgfast's nnU-Net v2 trainers: found by nnU-Net's own lookup after ``register``, trained
on a tiny dataset planned and preprocessed by nnU-Net's own command, resumable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("nnunetv2")

from qgfast.data import make_synthetic_dataset
from qgfast.integrations import nnunet
from qgfast.integrations.nnunet import trainers as qt

DATASET = "Dataset901_QGSynth"


@pytest.fixture(scope="module")
def registered():
    was = nnunet.is_registered()
    nnunet.register()
    yield
    if not was:
        nnunet.unregister()


def test_register_is_reversible_and_leaves_foreign_files_alone(tmp_path, monkeypatch):
    target = tmp_path / "qgfast_trainers.py"
    monkeypatch.setattr(nnunet, "registration_file", lambda: target)
    assert not nnunet.is_registered()
    nnunet.register()
    nnunet.register()  # idempotent
    assert nnunet.is_registered()
    assert all(name in target.read_text() for name in nnunet.TRAINER_NAMES)
    assert nnunet.unregister()
    assert not target.exists()
    assert not nnunet.unregister()
    target.write_text("# someone else's module\n")
    with pytest.raises(FileExistsError, match="not written by qgfast"):
        nnunet.register()
    with pytest.raises(FileExistsError, match="not written by qgfast"):
        nnunet.unregister()


@pytest.mark.usefixtures("registered")
def test_nnunet_finds_the_trainers_by_name():
    from nnunetv2.run.run_training import recursive_find_trainer_class_by_name

    for name in nnunet.TRAINER_NAMES:
        cls = recursive_find_trainer_class_by_name(name)
        assert cls.__name__ == name
        assert issubclass(cls, qt.nnUNetTrainerQGBase)


@pytest.fixture(scope="module")
def nnunet_env(tmp_path_factory):
    """A 5-case organ3d set in nnU-Net's raw layout, planned and preprocessed by
    ``nnUNetv2_plan_and_preprocess``; a fixed split; a guide whose scores are near 1."""
    root = tmp_path_factory.mktemp("nnunet")
    env = {
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "pre"),
        "nnUNet_results": str(root / "res"),
    }
    make_synthetic_dataset("organ3d", 5, root / "raw" / DATASET, size=(24, 24, 20))
    done = subprocess.run(
        ["nnUNetv2_plan_and_preprocess", "-d", "901", "-c", "3d_fullres", "-np", "1"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    pre = root / "pre" / DATASET
    split = [{"train": [f"organ_{i:04d}" for i in range(4)], "val": ["organ_0004"]}]
    (pre / "splits_final.json").write_text(json.dumps(split))
    (root / "unlabeled.txt").write_text("organ_0002\norgan_0003\n")
    from qgfast.quality import QualityPredictor
    from qgfast.quality.checkpoint import save_checkpoint

    torch.manual_seed(0)
    g = QualityPredictor(3, 1, 4, backbone="resnet10")
    torch.nn.init.constant_(g.head[-1].bias, 5.0)  # scores ≈ 1: every weight non-zero
    save_checkpoint({"model": g.state_dict(), "predictor": g.config}, root / "guide.pt")
    env |= {
        "nnUNet_n_proc_DA": "0",  # training: augment in the main process (planning needs > 0)
        qt.GUIDE_ENV: str(root / "guide.pt"),
        qt.EPOCHS_ENV: "2",
        qt.ITERATIONS_ENV: "2",
        qt.VAL_ITERATIONS_ENV: "1",
        qt.RAMP_ENV: "0,1",
    }
    return root, env


def _trainer(name: str, env: dict, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import nnunetv2.paths
    import nnunetv2.run.run_training as run

    # nnU-Net reads its paths at import time
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setattr(nnunetv2.paths, key, env[key])
        monkeypatch.setattr(run, key, env[key], raising=False)
    return run.get_trainer_from_args("901", "3d_fullres", 0, name, device=torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.usefixtures("registered")
def test_mt_qw_trains_with_nnunets_pipeline_and_resumes(nnunet_env, monkeypatch):
    root, env = nnunet_env
    env = env | {qt.UNLABELED_ENV: str(root / "unlabeled.txt")}
    trainer = _trainer("nnUNetTrainerMeanTeacherQW", env, monkeypatch)
    trainer.run_training()
    tr_keys, _ = trainer.do_split()
    assert sorted(tr_keys) == ["organ_0000", "organ_0001"]  # the unlabelled ones left
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainerMeanTeacherQW"
    assert ckpt["qgfast"]["ssl_updates"] == 4
    teacher = ckpt["qgfast"]["teacher"]
    student = ckpt["network_weights"]
    assert any(not torch.equal(teacher[k], student[k]) for k in student)
    log = "".join(p.read_text() for p in Path(trainer.output_folder).glob("training_log_*.txt"))
    assert "qgfast mt-qw" in log
    weights = re.findall(r"'quality_weight_mean': ([0-9.]+)", log)
    assert weights, log[-2000:]
    assert float(weights[-1]) > 0.5  # the guide weighted the consistency term
    resumed = _trainer("nnUNetTrainerMeanTeacherQW", env, monkeypatch)
    resumed.load_checkpoint(str(final))
    assert resumed.ssl_updates == 4
    for k, v in resumed.teacher.state_dict().items():
        torch.testing.assert_close(v.cpu(), teacher[k])


@pytest.mark.slow
@pytest.mark.usefixtures("registered")
def test_pl_reads_a_folder_of_unlabelled_images(nnunet_env, monkeypatch, tmp_path):
    root, env = nnunet_env
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for i in (2, 3):
        name = f"organ_{i:04d}_0000.nii.gz"
        shutil.copy(root / "raw" / DATASET / "imagesTr" / name, folder / name)
    env = env | {qt.UNLABELED_ENV: str(folder), qt.EPOCHS_ENV: "1"}
    trainer = _trainer("nnUNetTrainerPL", env, monkeypatch)
    trainer.run_training()
    assert sorted(
        p.name for p in Path(trainer.output_folder, "unlabeled_preprocessed").glob("*.pkl")
    ) == [
        "organ_0002.pkl",
        "organ_0003.pkl",
    ]
    ckpt = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", weights_only=False)
    assert ckpt["qgfast"]["method"] == "pl"


@pytest.mark.slow
def test_settings_errors_name_the_variable(nnunet_env, monkeypatch, tmp_path):
    _, env = nnunet_env
    monkeypatch.delenv(qt.UNLABELED_ENV, raising=False)
    with pytest.raises(ValueError, match=qt.UNLABELED_ENV):
        _trainer("nnUNetTrainerMeanTeacher", env, monkeypatch)
    (tmp_path / "bad.txt").write_text("organ_0004\n")  # fold 0's validation case
    trainer = _trainer(
        "nnUNetTrainerMeanTeacher", env | {qt.UNLABELED_ENV: str(tmp_path / "bad.txt")}, monkeypatch
    )
    with pytest.raises(ValueError, match="validation split"):
        trainer.do_split()
    with pytest.raises(ValueError, match=qt.EPOCHS_ENV):
        _trainer("nnUNetTrainerMeanTeacher", env | {qt.EPOCHS_ENV: "zero"}, monkeypatch)
