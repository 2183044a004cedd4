"""The README's own-loop example runs as written (a real predictor checkpoint, MONAI UNet)."""

import re
from pathlib import Path

import pytest
import torch

from qgfast.quality import QualityPredictor
from qgfast.quality.checkpoint import save_checkpoint

README = Path(__file__).resolve().parents[2] / "README.md"


def _loop_block() -> str:
    text = README.read_text()
    match = re.search(r"<!-- ssl-loop:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README has no ssl-loop block"
    return match.group(1)


def test_readme_loop_trains_mt_qw(tmp_path, monkeypatch) -> None:
    pytest.importorskip("monai")
    g = QualityPredictor(spatial_dims=2, image_channels=3, num_classes=2, backbone="resnet10")
    ckpt = tmp_path / "runs" / "lesion2d" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint({"model": g.state_dict(), "predictor": g.config}, ckpt)
    monkeypatch.chdir(tmp_path)
    gen = torch.Generator().manual_seed(0)
    labeled_loader = [
        {
            "image": torch.randn(2, 3, 16, 16, generator=gen),
            "label": torch.randint(0, 2, (2, 1, 16, 16), generator=gen).to(torch.uint8),
        }
        for _ in range(2)
    ]
    unlabeled_loader = [{"image": torch.randn(3, 3, 16, 16, generator=gen)} for _ in range(2)]
    scope = {"labeled_loader": labeled_loader, "unlabeled_loader": unlabeled_loader, "epochs": 2}
    exec(compile(_loop_block(), str(README), "exec"), scope)
    fw, out = scope["fw"], scope["out"]
    assert fw.name == "MT-QW"
    assert fw.global_step == 4
    assert fw.epoch == 2
    assert torch.isfinite(out["loss"])
    assert {"sup", "consistency", "quality_weight_mean"} <= out.keys()
