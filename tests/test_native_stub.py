"""The ``_native.pyi`` stub names exactly what the extension exports."""

import ast
from pathlib import Path

import pytest

native = pytest.importorskip("qgfast._native")


def test_stub_matches_the_extension():
    stub = ast.parse((Path(native.__file__).parent / "_native.pyi").read_text())
    declared = {
        node.name if not isinstance(node, ast.AnnAssign) else node.target.id
        for node in stub.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AnnAssign))
    }
    exported = {name for name in dir(native) if not name.startswith("__") or name == "__version__"}
    assert declared == exported
