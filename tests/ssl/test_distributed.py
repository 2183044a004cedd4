"""Two CPU processes under torch.distributed (gloo), launched with the variables torchrun
sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), run ``qgfast train`` on one
shared run folder: rank 0 alone writes, validation gathers every rank's cases, and the
gathered metrics equal those of one process scoring the same weights. The split leaves one
validation case for two ranks on purpose: uneven shards are what deadlocked validation
through DDP's forward (fixed by ``distributed.for_inference``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from qgfast.data import find_cases
from qgfast.ssl import distributed as dist
from qgfast.ssl.inference import Preprocessing, Validator
from qgfast.ssl.predict import load_run_model

pytest.importorskip("monai")

WORLD = 2
TRAIN = [
    "train",
    "--method",
    "mt",
    "--synthetic",
    "organ3d",
    "--n",
    "10",
    "--synthetic-size",
    "24,24,16",
    "--labeled",
    "4",
    "--batch-size",
    "1",
    "--channels",
    "4,8",
    "--patch",
    "16,16,16",
    "--max-steps",
    "4",
    "--val-every",
    "2",
    "--no-progress",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, tmp_path) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for rank in range(WORLD):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(WORLD),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            CUDA_VISIBLE_DEVICES="",
        )
        log = open(tmp_path / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below
        cmd = [sys.executable, "-m", "qgfast", *TRAIN, "--out", str(out), "--device", "cpu"]
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    try:
        for proc, _ in procs:
            codes.append(proc.wait(timeout=240))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    return codes


def test_two_process_gloo_run_writes_once_and_matches_one_process(tmp_path) -> None:
    out = tmp_path / "run"
    codes = _launch(out, tmp_path)
    logs = [(tmp_path / f"rank{r}.log").read_text() for r in range(WORLD)]
    assert codes == [0] * WORLD, "\n---\n".join(logs)
    # Only rank 0 prints and writes: one history line per validation, not one per rank.
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    assert "Dice" in logs[0]
    assert "Dice" not in logs[1]
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == 4

    # The gathered test metrics cover every test case once, in case order ...
    split = json.loads((out / "split.json").read_text())
    test_ids = split["test"]["cases"]
    gathered = report["test_best"]
    assert [c["case"] for c in gathered["per_case"]] == test_ids
    # ... and equal what a single process computes from the same weights.
    assert not dist.is_distributed()
    model, run = load_run_model(out / "best.pt", torch.device("cpu"))
    by_id = {c.case_id: c for c in find_cases(out / "data")}
    single = Validator(
        [by_id[i] for i in test_ids],
        Preprocessing.from_dict(run["preprocessing"]),
        run["num_classes"],
    )(model)
    for key in ("dice", "jaccard"):
        assert single[key] == pytest.approx(gathered[key], abs=1e-6), key
    for mine, theirs in zip(single["per_case"], gathered["per_case"], strict=True):
        assert mine["dice"] == pytest.approx(theirs["dice"], abs=1e-6)
