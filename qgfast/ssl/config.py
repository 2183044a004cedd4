"""``RunConfig``: every setting of ``qgfast train``, one field per flag and config-file key.

Resolution order: the defaults here, then ``--config FILE`` (YAML or JSON, the same keys
with underscores or dashes), then the flags given on the command line. Unknown keys are
an error, and the run folder stores the resolved config (``config.json``), so nothing a
run depended on is hidden. A resumed run takes its stored config; a flag that would
change it is refused (except the few in ``RESUME_MAY_CHANGE``).
"""

from __future__ import annotations

# ruff: noqa: RUF009  (every field is made by _f, which attaches the flag's help text)
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

RESUME_MAY_CHANGE = {"device", "progress", "threads", "log_every", "resume", "out"}


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    # what to train
    method: str = _f("mt-qw", "framework: sup, qar, pl-t, pl-c, pl-qw, mt, mt-qw, ua-mt, ...")
    data: str | None = _f(None, "dataset folder (imagesTr/labelsTr or images/masks)")
    synthetic: str | None = _f(None, "generate a built-in set: lesion2d, cardiac2d or organ3d")
    n: int = _f(48, "cases of the synthetic set")
    synthetic_size: list[int] | None = _f(None, "synthetic image side / volume shape")
    unlabeled_data: str | None = _f(None, "an extra folder of unlabelled images")
    quality: str | None = _f(None, "a qgfast train-quality checkpoint (for -qw and qar)")
    out: str | None = _f(None, "run folder")
    # splits
    labeled: int | None = _f(None, "labelled training cases (first N of a seeded shuffle)")
    labeled_list: str | None = _f(None, "file of labelled case ids (instead of --labeled)")
    val_fraction: float = _f(0.1, "share of labelled cases held out for validation")
    test_fraction: float = _f(0.2, "share of labelled cases held out for the final test")
    val_list: str | None = _f(None, "file of validation case ids")
    test_list: str | None = _f(None, "file of test case ids")
    audit_split: int = _f(0, "labelled cases trained as unlabelled and audited")
    # network
    model: str = _f("unet", "unet, basicunet, vnet, attention-unet or pkg.module:factory")
    channels: list[int] | None = _f(None, "features per level, e.g. 16,32,64,128,256")
    # data stream
    patch: list[int] | None = _f(None, "3D patch (default 96,96,64 capped at the volumes)")
    size: list[int] | None = _f(None, "2D training size (default 224, or the image size)")
    batch_size: int = _f(2, "labelled samples per step")
    unlabeled_batch_size: int = _f(2, "unlabelled samples per step")
    samples_per_volume: int = _f(4, "3D crops per decoded volume")
    foreground_prob: float = _f(0.33, "share of 3D crops centred on foreground")
    normalisation: str | None = _f(None, "3D: zscore (default), zscore-nonzero, percentile, ...")
    threads: int = _f(2, "stream decode threads")
    skip_bad_cases: bool = _f(False, "skip (and list) unreadable cases instead of stopping")
    # optimisation
    epochs: int | None = _f(200, "epoch budget (one pass over the labelled stream)")
    max_steps: int | None = _f(None, "iteration budget (overrides epochs)")
    optimizer: str = _f("adamw", "adamw, sgd or adam")
    lr: float = _f(1e-4, "learning rate")
    weight_decay: float = _f(1e-4, "weight decay")
    momentum: float = _f(0.9, "SGD momentum")
    schedule: str = _f("cosine", "cosine, poly or constant (per step, after warm-up)")
    warmup_steps: int = _f(0, "linear lr warm-up steps")
    min_lr: float = _f(1e-6, "cosine floor")
    grad_clip: float | None = _f(1.0, "gradient-norm clip (0: off)")
    amp: str = _f("auto", "auto (bf16 on CUDA), bf16, fp16 or off")
    # the unsupervised terms
    ramp: str = _f("paper", "paper (epoch warm-up + linear), sigmoid (SSL4MIS) or constant")
    consistency: float | None = _f(None, "final weight of the unsupervised term")
    ramp_length: float = _f(40.0, "sigmoid ramp length in units of 150 steps (UA-MT: 40)")
    ema_decay: float | None = _f(None, "EMA decay of the teacher (default: the method's)")
    # validation and bookkeeping
    val_every: int | None = _f(None, "steps between validations (default: one epoch)")
    patience: int | None = _f(30, "validations without a Dice gain before stopping (0: off)")
    checkpoint_every: int = _f(500, "steps between last.pt writes")
    log_every: int = _f(10, "steps between logged scalars")
    overlap: float = _f(0.5, "sliding-window overlap")
    sw_batch_size: int = _f(4, "sliding windows per forward")
    skip_nonfinite: bool = _f(False, "skip and count non-finite steps instead of stopping")
    deterministic: bool = _f(False, "deterministic kernels (exact resume; slower on GPU)")
    seed: int = _f(0, "seed of the split, the initialisation and every draw")
    seeds: list[int] | None = _f(None, "repeat the run for each seed; report mean ± sd")
    device: str | None = _f(None, "cuda, cpu, ... (default: cuda when available)")
    progress: bool = _f(True, "progress bar")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KEYS = {f.name for f in fields(RunConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys of a YAML or JSON config file (dashes read as underscores), unknown keys refused."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml)") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds one mapping of keys to values")
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(out) - KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown config key(s) {unknown}; see qgfast train --help")
    return out


def resolve(file_values: dict[str, Any], explicit: dict[str, Any]) -> RunConfig:
    """Defaults ← config file ← explicit flags."""
    return RunConfig(**{**file_values, **explicit})


def check_resume(stored: dict[str, Any], explicit: dict[str, Any]) -> RunConfig:
    """The stored config, with the explicit flags allowed to change on a resume."""
    changed = {
        k: (stored.get(k), v)
        for k, v in explicit.items()
        if k not in RESUME_MAY_CHANGE and stored.get(k) != v
    }
    if changed:
        detail = "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items())
        raise ValueError(
            f"--resume continues the stored run; these flags would change it: {detail} "
            "(start a new run folder instead)"
        )
    merged = {**stored, **{k: v for k, v in explicit.items() if k in RESUME_MAY_CHANGE}}
    return RunConfig(**{k: v for k, v in merged.items() if k in KEYS})
