"""The optional published-generator provider: off without QGFAST_QGSSL_PATH, a clear error
for a wrong path, and a stand-in tree at the path is imported and called per mask."""

import sys
import types

import numpy as np
import pytest

from qgfast.bench import published_generator

STAND_IN = """
class VQMGenerator:
    def __init__(self, gt_masks=None):
        self.gt_masks = gt_masks

    def __call__(self, gt_mask, idx, rng):
        return gt_mask, 1.0, f"identity-{idx}"
"""


def test_off_without_the_variable(monkeypatch) -> None:
    monkeypatch.delenv(published_generator.PATH_ENV, raising=False)
    assert published_generator.load() is None


def test_a_wrong_path_says_what_is_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(published_generator.PATH_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"data/vqm_generator\.py"):
        published_generator.load()


def test_a_tree_at_the_path_is_called_k_times_per_mask(tmp_path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("")
    (tmp_path / "data" / "vqm_generator.py").write_text(STAND_IN)
    monkeypatch.setenv(published_generator.PATH_ENV, str(tmp_path))
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    for name in [m for m in sys.modules if m == "data" or m.startswith("data.")]:
        monkeypatch.delitem(sys.modules, name)
    generate = published_generator.load()
    out = generate(np.zeros((2, 8, 8), bool), 3)
    assert [name for _, _, name in out] == ["identity-0"] * 3 + ["identity-1"] * 3
    with pytest.raises(ValueError, match="2D"):
        generate(np.zeros((1, 4, 4, 4), bool), 1)
