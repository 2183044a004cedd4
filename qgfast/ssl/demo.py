"""``qgfast demo``: the whole method end to end on one fixed split (docs/demo.md).

1. Data: the built-in synthetic set (lesion2d with a mix of easy and hard cases, or
   organ3d) generated into OUT/data, or the user's folder.
2. Split, once, from ``split_seed``: labelled / unlabelled / validation / test, written to
   OUT/split/*.txt and used by every run, so seeds vary initialisation and sampling only.
3. Phase 1: the quality predictor trained on the labelled cases alone (``qgfast
   train-quality`` on a folder holding just those cases), into OUT/quality.
4. Phase 2: every method at the same step budget and every seed through ``train_run``
   (model selection on the validation split), into OUT/runs/METHOD/seed_S.
5. The test split, read once per run after training: mean ± sd over seeds of test Dice
   and Jaccard of the validation-selected weights, each -QW method against its baseline,
   the predictor's held-out agreement and the pseudolabel audit (unlabelled cases' hidden
   labels, used for the audit only), into OUT/report.json and OUT/demo.png.

report.json is rewritten after every finished run, so an interrupted demo keeps what
finished.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

METHODS = ("sup", "mt", "mt-qw", "pl-qw", "qar", "cps", "cps-qw")
NAMES = {
    "sup": "SUP",
    "mt": "MT",
    "mt-qw": "MT-QW",
    "pl-qw": "PL-QW",
    "qar": "QAR",
    "cps": "CPS",
    "cps-qw": "CPS-QW",
}
# What each quality-guided method is compared against (same budget, same split, same seeds).
BASELINE = {"mt-qw": "mt", "cps-qw": "cps", "pl-qw": "sup", "qar": "sup", "mt": "sup", "cps": "sup"}
GUIDED = ("mt-qw", "pl-qw", "qar", "cps-qw")


@dataclass
class Profile:
    """Sizes and budgets of one demo setting (``profile()`` picks one)."""

    n: int
    size: list[int]
    labeled: int
    steps: int
    val_every: int
    channels: list[int]
    batch: int
    lr: float = 1e-3
    patch: list[int] | None = None
    hard_fraction: float = 0.5
    q_epochs: int = 15
    q_k: int = 32
    q_backbone: str = "resnet10"
    q_weak_epochs: int = 5
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def profile(synthetic: str | None, quick: bool, cuda: bool) -> Profile:
    """The default sizes: ``quick`` is CI-sized (asserts the pipeline, not the science);
    the CPU default fits ≤ 10 minutes on 2 cores; CUDA runs larger images and budgets."""
    if synthetic == "organ3d":
        if quick:
            return Profile(
                10,
                [32, 32, 16],
                3,
                6,
                3,
                [4, 8],
                1,
                patch=[16, 16, 16],
                hard_fraction=0.0,
                q_epochs=2,
                q_k=4,
                q_weak_epochs=1,
                seeds=[0],
            )
        return Profile(
            32,
            [64, 64, 48],
            8,
            400 if not cuda else 2000,
            50,
            [8, 16, 32],
            2,
            patch=[48, 48, 32],
            hard_fraction=0.0,
            q_epochs=10,
            q_k=16,
        )
    if quick:
        return Profile(36, [32], 6, 12, 6, [4, 8], 2, q_epochs=2, q_k=4, q_weak_epochs=1, seeds=[0])
    if cuda:
        return Profile(
            400,
            [128],
            40,
            3000,
            150,
            [16, 32, 64, 128],
            8,
            q_epochs=40,
            q_k=50,
            q_backbone="resnet18",
            q_weak_epochs=10,
        )
    return Profile(160, [64], 16, 300, 50, [8, 16, 32, 64], 4)


@dataclass
class DemoConfig:
    out: Path
    data: Path | None = None
    synthetic: str | None = "lesion2d"
    labeled: int | None = None
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: list[int] | None = None
    quick: bool = False
    steps: int | None = None
    n: int | None = None
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.25
    device: str | None = None
    progress: bool = True


def _check(cfg: DemoConfig) -> None:
    """Bad input: a clear error before any work starts."""
    if (cfg.data is None) == (cfg.synthetic is None):
        raise ValueError("give exactly one of --data DIR and --synthetic lesion2d|organ3d")
    if cfg.data is not None and cfg.labeled is None:
        raise ValueError("--data needs --labeled N (how many training cases keep their labels)")
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise ValueError(f"--methods must be a non-empty subset of {list(METHODS)}, got {unknown}")
    if cfg.seeds is not None and (not cfg.seeds or min(cfg.seeds) < 0):
        raise ValueError(f"--seeds needs one or more seeds >= 0, got {cfg.seeds}")
    if cfg.steps is not None and cfg.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {cfg.steps}")
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
        probe = cfg.out / ".qgfast-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to --out {cfg.out}: {err}") from err


def _labelled_only_folder(cases, root: Path, dest: Path) -> Path:
    """A dataset folder holding just ``cases`` (hard links where the filesystem allows):
    what the predictor may learn from."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    for c in cases:
        for src in c.images:
            _link(src, dest / "imagesTr" / src.name)
        _link(c.label, dest / "labelsTr" / c.label.name)
    if (root / "dataset.json").is_file():
        meta = json.loads((root / "dataset.json").read_text())
        meta.pop("hard_cases", None)
        meta["numTraining"] = len(cases)
        (dest / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return dest


def _link(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def _nnunet_layout(cases) -> bool:
    return all(c.images[0].parent.name == "imagesTr" for c in cases)


def _mean_sd(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
    return {"mean": mean, "sd": sd, "values": values}


def summarise_methods(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per method: mean ± sd over seeds of the test metrics of the validation-selected
    weights (``test_best``), and each method against its baseline (paired by seed)."""
    out: dict[str, Any] = {}
    for method, reports in runs.items():
        done = [r for r in reports if "test_best" in r]
        if not done:
            continue
        out[method] = {
            "seeds": [r["seed"] for r in done],
            **{k: _mean_sd([r["test_best"][k] for r in done]) for k in ("dice", "jaccard")},
            "final_dice": _mean_sd([r["test_final"]["dice"] for r in done]),
        }
    for method, row in out.items():
        base = BASELINE.get(method)
        if base not in out:
            continue
        pairs = [
            (a, b)
            for s, a in zip(row["seeds"], row["dice"]["values"], strict=True)
            for s2, b in zip(out[base]["seeds"], out[base]["dice"]["values"], strict=True)
            if s == s2
        ]
        if not pairs:
            continue
        deltas = [a - b for a, b in pairs]
        d = _mean_sd(deltas)
        row["vs_baseline"] = {
            "baseline": base,
            "dice_delta": d,
            "wins": sum(x > 0 for x in deltas),
            "seeds": len(deltas),
            "verdict": _verdict(deltas, d),
        }
    return out


MIN_EFFECT = 0.005  # Dice: a smaller mean difference is no difference a user would see


def _verdict(deltas: list[float], d: dict[str, Any]) -> str:
    """'better' / 'worse' only when the mean paired difference is at least ``MIN_EFFECT``
    and exceeds its own seed-to-seed spread; one seed has no spread, so no verdict."""
    if len(deltas) < 2:
        return "one seed: no verdict"
    if abs(d["mean"]) >= MIN_EFFECT and abs(d["mean"]) > d["sd"]:
        return "better" if d["mean"] > 0 else "worse"
    return "no clear difference"


def _audit(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    pairs = [r["audit_pairs"] for r in reports if r.get("audit_pairs")]
    if not pairs:
        return None
    from qgfast.quality.metrics import agreement

    q = torch.tensor([v for p in pairs for v in p["quality"]])
    d = torch.tensor([v for p in pairs for v in p["dice"]])
    stats = agreement(q, d)
    return {
        "pearson": stats["pearson"],
        "mae": stats["mae"],
        "n": int(q.numel()),
        "quality": q.tolist(),
        "dice": d.tolist(),
    }


def print_table(report: dict[str, Any]) -> None:
    methods = report["methods"]
    seeds = report["seeds"]
    print(
        f"\ntest split ({report['split']['test']} cases), validation-selected weights, "
        f"seeds {seeds}:"
    )
    print(f"  {'method':<8} {'Dice':>16} {'Jaccard':>16}   vs baseline (paired by seed)")
    for m in report["config"]["methods"]:
        if m not in methods:
            continue
        row = methods[m]
        dice, jac = row["dice"], row["jaccard"]
        vs = ""
        if "vs_baseline" in row:
            v = row["vs_baseline"]
            vs = (
                f"{NAMES[v['baseline']]:<4} Δ {v['dice_delta']['mean']:+.4f} ± "
                f"{v['dice_delta']['sd']:.4f}, {v['wins']}/{v['seeds']} seeds better: "
                f"{v['verdict']}"
            )
        print(
            f"  {NAMES[m]:<8} {dice['mean']:.4f} ± {dice['sd']:.4f}  "
            f"{jac['mean']:.4f} ± {jac['sd']:.4f}   {vs}"
        )
    q = report.get("quality")
    if q:
        print(
            f"quality predictor on held-out labelled cases: MAE {q['mae']:.3f}, "
            f"Pearson {q['pearson']:.3f} (corrupted masks)"
        )
    for m, a in report.get("audit", {}).items():
        print(
            f"pseudolabel audit {NAMES[m]}: predicted quality vs true Dice of "
            f"{a['n']} unlabelled-case pseudolabels: Pearson {a['pearson']:.3f}, "
            f"MAE {a['mae']:.3f}"
        )
    print(f"{report['seconds']:.0f} s on {report['device']}")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """See the module docstring. Returns the report (also OUT/report.json)."""
    from qgfast.cli import main as qgfast_main
    from qgfast.data import find_cases, make_synthetic_dataset
    from qgfast.ssl.config import RunConfig
    from qgfast.ssl.run import train_run
    from qgfast.ssl.splits import make_split

    _check(cfg)
    t0 = time.perf_counter()
    cuda = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    prof = profile(cfg.synthetic, cfg.quick, cuda)
    seeds = cfg.seeds if cfg.seeds is not None else prof.seeds
    steps = cfg.steps or prof.steps
    out = cfg.out
    if cfg.synthetic is not None:
        root = out / "data"
        n = cfg.n or prof.n
        meta = root / "dataset.json"
        wanted = {"n": n, "size": prof.size, "hard_fraction": prof.hard_fraction}
        stamp = root / "demo-data.json"
        if not meta.is_file() or not stamp.is_file() or json.loads(stamp.read_text()) != wanted:
            print(f"writing {n} synthetic {cfg.synthetic} cases to {root}", flush=True)
            make_synthetic_dataset(
                cfg.synthetic, n, root, seed=0, size=prof.size, hard_fraction=prof.hard_fraction
            )
            stamp.write_text(json.dumps(wanted) + "\n")
        labeled = cfg.labeled or prof.labeled
    else:
        root = Path(cfg.data)  # type: ignore[arg-type]
        labeled = cfg.labeled  # type: ignore[assignment]
    cases = find_cases(root)
    split = make_split(
        cases,
        labeled=labeled,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
    )
    if not split.validation or not split.test:
        raise ValueError(f"{root}: too few labelled cases for a validation and a test split")
    if not split.unlabeled:
        raise ValueError(f"{root}: no case is left for the unlabelled pool")
    lists = out / "split"
    lists.mkdir(exist_ok=True)
    for name, part in (
        ("labeled", split.labeled),
        ("validation", split.validation),
        ("test", split.test),
        ("unlabeled", split.unlabeled),
    ):
        (lists / f"{name}.txt").write_text("".join(c.case_id + "\n" for c in part))
    dims = cases[0].spatial_dims
    hard = set()
    if (root / "dataset.json").is_file():
        hard = set(json.loads((root / "dataset.json").read_text()).get("hard_cases", []))
    split_info = {
        "labeled": len(split.labeled),
        "unlabeled": len(split.unlabeled),
        "validation": len(split.validation),
        "test": len(split.test),
        "hard_in_unlabeled": sum(c.case_id in hard for c in split.unlabeled),
        "hard_in_test": sum(c.case_id in hard for c in split.test),
    }
    print(
        f"{dims}D; split (seed {cfg.split_seed}): "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in split_info.items()),
        flush=True,
    )

    report: dict[str, Any] = {
        "config": {**asdict(cfg), "out": str(out), "data": str(root), "methods": cfg.methods},
        "profile": asdict(prof),
        "seeds": seeds,
        "steps": steps,
        "split": split_info,
        "device": device_name(cfg.device),
        "methods": {},
        "runs": {},
        "audit": {},
    }
    size_flag = {"patch": prof.patch} if dims == 3 else {"size": prof.size * 2}

    def write() -> None:
        report["seconds"] = time.perf_counter() - t0
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")

    # -- phase 1: the quality predictor, from the labelled cases only -------------------
    quality_ckpt = out / "quality" / "best.pt"
    if any(m in GUIDED for m in cfg.methods):
        print("phase 1: quality predictor on the labelled cases", flush=True)
        qdata = _labelled_only_folder(split.labeled, root, out / "quality-data")
        args = [
            "train-quality",
            str(qdata),
            "--out",
            str(out / "quality"),
            "--epochs",
            str(prof.q_epochs),
            "--k",
            str(prof.q_k),
            "--backbone",
            prof.q_backbone,
            "--weak-epochs",
            str(prof.q_weak_epochs),
            "--batch-size",
            "32",
            "--images-per-batch",
            str(max(2, len(split.labeled))),
            "--val-fraction",
            "0.2",
        ]
        if dims == 2:
            args += ["--size", str(prof.size[0])]
        if cfg.device:
            args += ["--device", cfg.device]
        if not cfg.progress:
            args.append("--quiet")
        if qgfast_main(args) != 0:
            raise RuntimeError("phase 1 (train-quality) failed")
        qrep = json.loads((out / "quality" / "report.json").read_text())
        report["quality"] = {k: qrep["corrupted"][k] for k in ("mae", "pearson", "spearman", "n")}
        report["quality"]["weak_model"] = qrep["weak_model"]
        write()

    # -- phase 2: every method, every seed, same budget ----------------------------------
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in cfg.methods}
    total = len(cfg.methods) * len(seeds)
    k = 0
    for method in cfg.methods:
        for seed in seeds:
            k += 1
            folder = out / "runs" / method / f"seed_{seed}"
            if folder.exists():
                shutil.rmtree(folder)  # a fresh run: never resume silently into old results
            print(f"phase 2 [{k}/{total}]: {NAMES[method]} seed {seed}", flush=True)
            run_cfg = RunConfig(
                method=method,
                data=str(root),
                out=str(folder),
                labeled_list=str(lists / "labeled.txt"),
                val_list=str(lists / "validation.txt"),
                test_list=str(lists / "test.txt"),
                quality=str(quality_ckpt) if method in GUIDED else None,
                channels=prof.channels,
                batch_size=prof.batch,
                unlabeled_batch_size=prof.batch,
                epochs=None,
                max_steps=steps,
                val_every=prof.val_every,
                lr=prof.lr,
                patience=0,
                checkpoint_every=10**9,
                seed=seed,
                device=cfg.device,
                progress=cfg.progress,
                **size_flag,
            )
            rep = train_run(run_cfg, folder)
            runs[method].append(rep)
            if rep["training"]["stopped"] == "interrupted":
                report["interrupted"] = True
                _finish(report, runs)
                write()
                return report
            _finish(report, runs)
            write()

    # -- the picture: bars, audit scatter, a few unlabelled cases ------------------------
    from qgfast.ssl.demo_plot import examples, plot_demo

    shown: list[dict[str, Any]] = []
    source = next((m for m in (*GUIDED, "mt", "cps", "sup") if runs.get(m)), None)
    if dims == 2 and source is not None and quality_ckpt.is_file():
        folder = out / "runs" / source / f"seed_{seeds[0]}"
        shown = examples(folder, quality_ckpt, split.unlabeled, hard)
        for e in shown:
            e["source"] = f"{NAMES[source]} seed {seeds[0]}"
        keep = ("case", "hard", "quality", "weight", "dice", "source")
        report["examples"] = [{k: e[k] for k in keep} for e in shown]
    plot_demo(report, out / "demo.png", shown)
    write()
    return report


def _finish(report: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
    report["methods"] = summarise_methods(runs)
    report["runs"] = {
        m: [
            {
                "seed": r["seed"],
                "test_best": _scalars(r.get("test_best")),
                "test_final": _scalars(r.get("test_final")),
                "best_step": r["training"]["best"].get("step"),
                "throughput": r["training"].get("throughput"),
            }
            for r in reps
        ]
        for m, reps in runs.items()
    }
    report["audit"] = {m: a for m in GUIDED if m in runs and (a := _audit(runs[m]))}


def _scalars(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {k: v for k, v in m.items() if k != "per_case"}


def device_name(device: str | None) -> str:
    """The GPU's name, or the CPU's model and the threads torch uses."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} threads"
