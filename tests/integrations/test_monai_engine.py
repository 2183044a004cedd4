"""qgfast frameworks inside MONAI's SupervisedTrainer: the same training as a hand loop,
the EMA handler enforced, quality and audit logging, and the bundle config example."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("ignite")
pytest.importorskip("monai")
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.handlers import from_engine
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

from qgfast import ssl
from qgfast.data import make_synthetic_dataset
from qgfast.integrations import monai_engine as qme
from qgfast.quality import QualityGuide, QualityPredictor

CONFIG = Path(__file__).parents[2] / "configs" / "monai_mt_qw.yaml"


@pytest.fixture(scope="module")
def lists(tmp_path_factory) -> dict:
    root = make_synthetic_dataset("lesion2d", 14, tmp_path_factory.mktemp("data"), size=24)
    return qme.monai_datalists(root, labeled=4, val_fraction=0.15, test_fraction=0.15)


def _loader(items, labelled: bool, batch: int = 2) -> DataLoader:
    keys = ["image", "label"] if labelled else ["image"]
    transform = Compose(
        [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys), ScaleIntensityd("image")]
    )
    rows = items if labelled else [{"image": d["image"]} for d in items]
    return DataLoader(Dataset(rows, transform), batch_size=batch, shuffle=False)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    net = UNet(2, 3, 2, channels=(4, 8), strides=(2,))
    predictor = QualityPredictor(2, 3, 2, backbone="resnet10")
    fw = ssl.MeanTeacher(net, quality=QualityGuide(predictor, threshold=0.0), steps_per_epoch=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    return net, fw, opt


def test_split_lists_keep_unlabelled_labels_out_of_training(lists):
    assert len(lists["labeled"]) == 4
    assert {d["image"] for d in lists["labeled"]}.isdisjoint(d["image"] for d in lists["unlabeled"])
    assert lists["audit"] == [d for d in lists["unlabeled"] if "label" in d]
    held_out = {d["image"] for d in lists["validation"] + lists["test"]}
    assert held_out.isdisjoint(d["image"] for d in lists["labeled"] + lists["unlabeled"])


def test_engine_trains_exactly_as_the_hand_loop(lists, tmp_path):
    labelled, unlabelled = _loader(lists["labeled"], True), _loader(lists["unlabeled"], False)
    # the hand loop of docs/frameworks.md
    net, fw, opt = _setup()
    want = []
    for _ in range(2):
        for lab, unl in zip(labelled, unlabelled, strict=False):
            out = fw.step(
                {"image": lab["image"].as_tensor(), "label": lab["label"].as_tensor()},
                {"image": unl["image"].as_tensor()},
            )
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            fw.after_step()
            want.append(float(out["loss"].detach()))
    want_weights = [p.detach().clone() for p in fw.teacher.parameters()]
    # the same run inside MONAI's engine
    net, fw, opt = _setup()
    stats = qme.SSLStatsHandler(log_dir=tmp_path / "tb")
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=labelled,
        network=net,
        optimizer=opt,
        loss_function=None,
        iteration_update=qme.SemiSupervisedIteration(fw, unlabelled),
        train_handlers=[
            qme.EMAUpdateHandler(fw),
            stats,
            qme.PseudolabelAuditHandler(fw, _loader(lists["audit"], True)),
        ],
    )
    got = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: got.append(float(from_engine(["loss"], first=True)(e.state.output))),
    )
    trainer.run()
    assert fw.global_step == len(want) == 4
    assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(fw.teacher.parameters(), want_weights, strict=True):
        torch.testing.assert_close(a, b)
    assert {"sup", "consistency", "quality_weight_mean"} <= set(trainer.state.ssl_stats)
    assert -1.0 <= trainer.state.metrics["audit_pearson"] <= 1.0
    assert 0.0 <= trainer.state.metrics["audit_dice_mean"] <= 1.0
    stats.writer.flush()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_a_missing_ema_handler_stops_the_run(lists):
    net, fw, opt = _setup()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=_loader(lists["labeled"], True),
        network=net,
        optimizer=opt,
        loss_function=None,
        iteration_update=qme.SemiSupervisedIteration(fw, _loader(lists["unlabeled"], False)),
    )
    with pytest.raises(RuntimeError, match="EMAUpdateHandler"):
        trainer.run()


def test_audit_needs_a_guide():
    fw = ssl.MeanTeacher(UNet(2, 3, 2, channels=(4, 8), strides=(2,)), steps_per_epoch=1)
    with pytest.raises(ValueError, match="quality-guided"):
        qme.PseudolabelAuditHandler(fw, [])


def test_bundle_config_trains_mt_qw(lists, tmp_path):
    from monai.bundle import ConfigParser

    from qgfast.quality.checkpoint import save_checkpoint

    torch.manual_seed(0)
    predictor = QualityPredictor(2, 3, 2, backbone="resnet10")
    save_checkpoint(
        {"model": predictor.state_dict(), "predictor": predictor.config}, tmp_path / "g.pt"
    )
    root = Path(lists["labeled"][0]["image"]).parents[1]
    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser.update(
        {
            "dataset_dir": str(root),
            "guide_checkpoint": str(tmp_path / "g.pt"),
            "output_dir": str(tmp_path / "run"),
            "labeled": 4,
            "size": [24, 24],
            "max_epochs": 1,
            "batch_size": 2,
            "device": "$torch.device('cpu')",
            "network#channels": [4, 8],
            "network#strides": [2],
        }
    )
    parser.get_parsed_content("run")
    fw = parser.get_parsed_content("framework")
    assert isinstance(fw, ssl.MeanTeacher)
    assert fw.quality is not None
    assert fw.global_step == 2  # one epoch: 4 labelled cases in batches of 2
    assert list((tmp_path / "run").glob("*final_iteration=2.pt"))
