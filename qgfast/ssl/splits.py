"""The split manifest: which cases are labelled, unlabelled, validation, test and audit.

Cases with a label are shuffled once by the run's seed; the test and validation shares
are cut off first (or read from list files), and of the remaining training cases the
first N of the shuffle are labelled, the rest used as unlabelled images (their labels are
never read by training; the pseudolabel audit may score them). Cases without a label (or
from an extra unlabelled folder) join the unlabelled split. ``split.json`` in the run
folder records every list with a SHA-256 of its case ids and files, so two runs (or a
paper's table) can show they used the same split, and a resumed run refuses a changed one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qgfast.data.folders import Case

ROLES = ("labeled", "unlabeled", "validation", "test", "audit")


@dataclass
class Split:
    labeled: list[Case]
    unlabeled: list[Case]
    validation: list[Case]
    test: list[Case]
    audit: list[Case]  # unlabelled-in-training cases whose labels the audit may read

    def manifest(self, seed: int) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": seed}
        for role in ROLES:
            cases = getattr(self, role)
            out[role] = {
                "cases": [c.case_id for c in cases],
                "sha256": split_hash(cases),
            }
        return out


def split_hash(cases: Sequence[Case]) -> str:
    """SHA-256 of the cases' ids and file names and sizes, in order."""
    h = hashlib.sha256()
    for c in cases:
        h.update(c.case_id.encode())
        for p in (*c.images, *([c.label] if c.label is not None else [])):
            size = p.stat().st_size if p.exists() else -1
            h.update(f"\0{p.name}\0{size}".encode())
        h.update(b"\n")
    return h.hexdigest()


def read_list(path: str | Path) -> list[str]:
    """Case ids from a text file (one per line; blank lines and # comments ignored) or a
    JSON list."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no case list at {path}")
    text = path.read_text()
    if path.suffix == ".json":
        ids = json.loads(text)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{path}: expected a JSON list of case ids")
        return ids
    return [s for line in text.splitlines() if (s := line.split("#")[0].strip())]


def _pick(cases: list[Case], ids: list[str], what: str) -> list[Case]:
    by_id = {c.case_id: c for c in cases}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ValueError(f"the {what} list names cases not among the labelled cases: {unknown[:5]}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"the {what} list names a case twice")
    return [by_id[i] for i in ids]


def make_split(
    cases: Sequence[Case],
    *,
    labeled: int | None = None,
    labeled_list: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    val_list: Sequence[str] | None = None,
    test_list: Sequence[str] | None = None,
    audit: int = 0,
    extra_unlabeled: Sequence[Case] = (),
    seed: int = 0,
) -> Split:
    """See the module docstring. ``audit`` moves that many labelled training cases into
    the unlabelled split for the pseudolabel audit (unlabelled cases that have labels are
    audited anyway)."""
    with_label = [c for c in cases if c.label is not None]
    without = [c for c in cases if c.label is None] + list(extra_unlabeled)
    if not with_label:
        raise ValueError("no case has a label: training needs labelled cases")
    order = [with_label[i] for i in np.random.default_rng(seed).permutation(len(with_label))]
    taken: set[str] = set()

    def cut(ids, fraction, what):
        if ids is not None:
            part = _pick(with_label, list(ids), what)
        else:
            if not 0.0 <= fraction < 1.0:
                raise ValueError(f"the {what} fraction must be in [0, 1), got {fraction}")
            free = [c for c in order if c.case_id not in taken]
            n = round(fraction * len(with_label))
            part = free[:n] if fraction == 0 or n > 0 else free[:1]
        overlap = [c.case_id for c in part if c.case_id in taken]
        if overlap:
            raise ValueError(f"the {what} split overlaps an earlier split: {overlap[:5]}")
        taken.update(c.case_id for c in part)
        return part

    test = cut(test_list, test_fraction, "test")
    validation = cut(val_list, val_fraction, "validation")
    train = [c for c in order if c.case_id not in taken]
    if labeled_list is not None:
        lab = _pick(train, list(labeled_list), "labeled")
    else:
        if labeled is None:
            raise ValueError("say how many training cases are labelled (--labeled N or a list)")
        if labeled < 1:
            raise ValueError(f"--labeled must be >= 1, got {labeled}")
        if labeled > len(train):
            raise ValueError(
                f"--labeled {labeled} but only {len(train)} labelled training cases remain "
                f"after the test ({len(test)}) and validation ({len(validation)}) splits"
            )
        lab = train[:labeled]
    if audit < 0 or audit >= len(lab):
        raise ValueError(
            f"--audit-split {audit} must leave at least one of the {len(lab)} labelled cases"
        )
    lab = lab[: len(lab) - audit]
    lab_ids = {c.case_id for c in lab}
    rest = [c for c in train if c.case_id not in lab_ids]
    return Split(
        labeled=lab,
        unlabeled=rest + without,
        validation=validation,
        test=test,
        audit=[c for c in rest if c.label is not None],
    )


def write_manifest(split: Split, seed: int, path: Path) -> dict[str, Any]:
    manifest = split.manifest(seed)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_manifest(split: Split, seed: int, path: Path) -> None:
    """A resumed run must see the split it started with."""
    stored = json.loads(path.read_text())
    now = split.manifest(seed)
    changed = [r for r in ROLES if stored.get(r, {}).get("sha256") != now[r]["sha256"]]
    if changed:
        raise ValueError(
            f"{path}: the {', '.join(changed)} split differs from the one this run started "
            "with (the data folder or the split settings changed); refusing to resume"
        )
