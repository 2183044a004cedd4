"""``qgfast demo``: the quick run end to end (one split for every run, the predictor sees
labelled cases only, every method scored once on the test split, a picture), the summary's
paired comparison, an interrupted demo keeping its finished runs, and bad input."""

from __future__ import annotations

import json

import pytest

from qgfast.cli import main
from qgfast.ssl import demo
from qgfast.ssl.demo import METHODS, summarise_methods

pytest.importorskip("monai")
pytest.importorskip("matplotlib")


def _ids(path):
    return set(path.read_text().split())


def test_quick_demo_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == set(METHODS)
    assert (out / "demo.png").stat().st_size > 10_000
    # One split, disjoint, used by every run; the predictor saw the labelled cases only.
    kinds = ("labeled", "unlabeled", "validation", "test")
    parts = {p: _ids(out / "split" / f"{p}.txt") for p in kinds}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not parts[a] & parts[b], (a, b)
    images = (out / "quality-data" / "imagesTr").iterdir()
    predictor_cases = {p.name.split("_0000")[0] for p in images}
    assert predictor_cases == parts["labeled"]
    for method in METHODS:
        run = out / "runs" / method / "seed_0"
        split = json.loads((run / "split.json").read_text())
        assert set(split["test"]["cases"]) == parts["test"]
        assert set(split["labeled"]["cases"]) == parts["labeled"]
        assert report["runs"][method][0]["test_best"]["cases"] == len(parts["test"])
    assert set(report["audit"]) == {"mt-qw", "pl-qw", "qar", "cps-qw"}
    assert all(a["n"] == len(a["quality"]) == len(a["dice"]) > 0 for a in report["audit"].values())
    assert len(report["examples"]) > 0
    assert report["split"]["hard_in_unlabeled"] > 0  # the pool mixes easy and hard cases
    printed = capsys.readouterr().out
    assert "MT-QW" in printed
    assert "one seed: no verdict" in printed


def _rep(seed, dice):
    m = {"dice": dice, "jaccard": dice / (2 - dice)}
    return {"seed": seed, "test_best": m, "test_final": m}


def test_summary_pairs_seeds_and_says_when_a_variant_does_not_win() -> None:
    runs = {
        "mt": [_rep(0, 0.80), _rep(1, 0.82), _rep(2, 0.81)],
        "mt-qw": [_rep(0, 0.84), _rep(1, 0.85), _rep(2, 0.83)],
        "cps": [_rep(0, 0.80), _rep(1, 0.80)],
        "cps-qw": [_rep(0, 0.79), _rep(1, 0.82)],
    }
    s = summarise_methods(runs)
    assert s["mt-qw"]["dice"]["mean"] == pytest.approx(0.84)
    v = s["mt-qw"]["vs_baseline"]
    assert v["baseline"] == "mt"
    assert v["dice_delta"]["mean"] == pytest.approx(0.03)
    assert (v["wins"], v["seeds"], v["verdict"]) == (3, 3, "better")
    w = s["cps-qw"]["vs_baseline"]
    assert (w["wins"], w["verdict"]) == (1, "no clear difference")
    tiny = summarise_methods({"mt": runs["mt"], "mt-qw": [_rep(0, 0.8001), _rep(1, 0.8201)]})
    assert tiny["mt-qw"]["vs_baseline"]["verdict"] == "no clear difference"  # below 0.005
    assert "vs_baseline" not in s["mt"]  # its baseline (sup) did not run


def test_an_interrupted_demo_keeps_the_finished_runs(tmp_path, monkeypatch) -> None:
    import qgfast.ssl.run as run_mod

    real = run_mod.train_run
    calls = []

    def stop_on_second(cfg, folder, resume=False):
        report = real(cfg, folder, resume)
        calls.append(cfg.method)
        if len(calls) == 2:
            report["training"]["stopped"] = "interrupted"
        return report

    monkeypatch.setattr(run_mod, "train_run", stop_on_second)
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--methods", "sup", "mt", "cps", "--out", str(out)]
    code = main([*args, "--no-progress"])
    assert code == 130
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    assert "sup" in report["methods"]
    assert calls == ["sup", "mt"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "DATA"], "--labeled"),
        (["--seeds", "-1"], "--seeds"),
        (["--steps", "0"], "--steps"),
        (["--data", "DATA", "--labeled", "50"], "--labeled 50"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, extra, message) -> None:
    from qgfast.data import make_synthetic_dataset

    data = make_synthetic_dataset("lesion2d", 8, tmp_path / "data", size=32)
    extra = [str(data) if e == "DATA" else e for e in extra]
    out = tmp_path / "out"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_an_unwritable_out_is_refused(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--quick", "--out", str(blocker / "sub"), "--no-progress"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_profiles_fit_their_purpose() -> None:
    quick = demo.profile("lesion2d", quick=True, cuda=False)
    cpu = demo.profile("lesion2d", quick=False, cuda=False)
    gpu = demo.profile("lesion2d", quick=False, cuda=True)
    assert quick.steps < cpu.steps < gpu.steps
    assert len(cpu.seeds) >= 3
    assert len(gpu.seeds) >= 3
    assert cpu.hard_fraction > 0


def test_demo_on_a_user_folder(tmp_path) -> None:
    from qgfast.data import make_synthetic_dataset

    data = make_synthetic_dataset("lesion2d", 12, tmp_path / "data", size=32)
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--data", str(data), "--labeled", "3", "--methods", "sup", "pl-qw"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["labeled"] == 3
    assert report["split"]["hard_in_unlabeled"] == 0  # a user's folder marks no hard cases
    assert report["methods"]["pl-qw"]["vs_baseline"]["baseline"] == "sup"
    assert not (data / "split").exists()  # nothing is written into the user's folder


def test_quick_demo_in_3d(tmp_path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--synthetic", "organ3d", "--methods", "sup", "mt-qw"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["runs"]["mt-qw"][0]["test_best"]["cases"] == report["split"]["test"]
    assert len(report["runs"]["mt-qw"][0]["test_best"]["dice_per_class"]) == 3
    assert "examples" not in report  # no image grid for volumes
    assert (out / "demo.png").is_file()


@pytest.mark.slow
def test_organ3d_demo_at_its_own_sizes(tmp_path) -> None:
    """The 3D multi-class setting at its default sizes (fewer steps, one seed, two methods):
    slow on a CPU, so only in the slow CI step."""
    out = tmp_path / "demo"
    args = ["demo", "--synthetic", "organ3d", "--seeds", "0", "--methods", "sup", "mt-qw"]
    assert main([*args, "--steps", "60", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["profile"]["patch"] == [48, 48, 32]
    assert report["runs"]["sup"][0]["test_best"]["cases"] == report["split"]["test"]
    assert report["audit"]["mt-qw"]["n"] > 0
