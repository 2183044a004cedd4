"""Splits that cannot leak: disjoint, seeded, recorded with hashes, refused when changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from qgfast.data import Case
from qgfast.ssl.splits import check_manifest, make_split, read_list, write_manifest


def cases(n, unlabeled=0, root=Path("/nonexistent")):
    out = [Case(f"c{i:02d}", (root / f"c{i:02d}.png",), root / f"m{i:02d}.png") for i in range(n)]
    out += [Case(f"u{i:02d}", (root / f"u{i:02d}.png",), None) for i in range(unlabeled)]
    return out


def ids(cs):
    return [c.case_id for c in cs]


def test_roles_are_disjoint_and_cover_every_case() -> None:
    s = make_split(cases(20, unlabeled=3), labeled=4, val_fraction=0.1, test_fraction=0.2)
    assert (len(s.labeled), len(s.validation), len(s.test)) == (4, 2, 4)
    assert len(s.unlabeled) == 10 + 3
    roles = [set(ids(r)) for r in (s.labeled, s.unlabeled, s.validation, s.test)]
    assert sum(map(len, roles)) == 23
    assert len(set().union(*roles)) == 23
    assert set(ids(s.audit)) == set(ids(s.unlabeled)) - {"u00", "u01", "u02"}


def test_the_seed_decides_the_split_and_the_same_seed_repeats_it() -> None:
    a = make_split(cases(20), labeled=4, seed=0)
    b = make_split(cases(20), labeled=4, seed=0)
    c = make_split(cases(20), labeled=4, seed=1)
    assert ids(a.labeled) == ids(b.labeled)
    assert ids(a.test) == ids(b.test)
    assert ids(a.labeled) != ids(c.labeled) or ids(a.test) != ids(c.test)


def test_lists_and_the_audit_split(tmp_path) -> None:
    (tmp_path / "test.txt").write_text("c00\nc01  # held out\n\n")
    (tmp_path / "lab.json").write_text('["c05", "c06", "c07"]')
    assert read_list(tmp_path / "test.txt") == ["c00", "c01"]
    s = make_split(
        cases(12),
        labeled_list=read_list(tmp_path / "lab.json"),
        test_list=read_list(tmp_path / "test.txt"),
        val_fraction=0.0,
        audit=1,
    )
    assert ids(s.test) == ["c00", "c01"]
    assert ids(s.labeled) == ["c05", "c06"]
    assert "c07" in ids(s.unlabeled)
    assert "c07" in ids(s.audit)


def test_impossible_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="--labeled 9 but only 7"):
        make_split(cases(10), labeled=9, val_fraction=0.1, test_fraction=0.2)
    with pytest.raises(ValueError, match="no case has a label"):
        make_split(cases(0, unlabeled=3), labeled=1)
    with pytest.raises(ValueError, match="not among"):
        make_split(cases(5), labeled_list=["nope"])
    with pytest.raises(ValueError, match="overlaps"):
        make_split(cases(8), labeled=1, test_list=["c01"], val_list=["c01"])
    with pytest.raises(ValueError, match="audit"):
        make_split(cases(8), labeled=2, audit=2)


def test_the_manifest_records_hashes_and_refuses_a_changed_split(tmp_path) -> None:
    s = make_split(cases(10), labeled=3)
    manifest = write_manifest(s, 0, tmp_path / "split.json")
    assert manifest["labeled"]["cases"] == ids(s.labeled)
    assert len(manifest["test"]["sha256"]) == 64
    check_manifest(s, 0, tmp_path / "split.json")  # unchanged: fine
    with pytest.raises(ValueError, match="labeled"):
        check_manifest(make_split(cases(10), labeled=4), 0, tmp_path / "split.json")
