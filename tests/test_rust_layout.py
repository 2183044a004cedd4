"""The Rust crate's layout keeps its promises (docs/architecture.md): every file's `crate::`
and `super::` references form no circle, each top-level module uses only the layers below
it, and the crate root declares private modules and the #[pymodule] only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "rust" / "src"

# A module may use those of lower rank only (equal rank: neither uses the other).
RANK = {
    "errors": 0,
    "io": 1,
    "masks": 1,
    "volume": 2,
    "augment": 2,
    "build_info": 2,
    "stream": 3,
    "py": 4,
}

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}", re.S)

if not SRC.is_dir():  # an installed package without its sources: nothing to check
    pytest.skip("rust/src is not here", allow_module_level=True)


def _module(path: Path) -> tuple[str, ...]:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


FILES = {_module(p): p for p in sorted(SRC.rglob("*.rs"))}


def _resolve(segments: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of a path that is a module with its own file."""
    for n in range(len(segments), 0, -1):
        if segments[:n] in FILES:
            return segments[:n]
    return ()


def _code(path: Path) -> str:
    """The file without comments (doc comments name modules too)."""
    return "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())


def edges() -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in FILES}
    for module, path in FILES.items():
        code = _code(path)
        # the module a `super::` starts from: a file's parent module (a mod.rs's own parent)
        parent = module[:-1]
        refs = []
        for root, prefix, inner in GROUP.findall(code):
            for item in inner.split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    refs.append((root, prefix + "::" + item))
                elif item == "self":
                    refs.append((root, prefix))
        refs += PATH.findall(code)
        for root, rest in refs:
            segments = tuple(s for s in rest.split("::") if s)
            base = () if root == "crate" else parent
            while segments and segments[0] == "super":
                base, segments = base[:-1], segments[1:]
            target = _resolve(base + segments)
            if target != module and target != ():
                graph[module].add(target)
    return graph


def test_the_crate_root_declares_private_modules_and_the_pymodule_only():
    root = _code(SRC / "lib.rs")
    assert "pub mod" not in root
    assert root.count("#[pymodule]") == 1
    assert "#[pyfunction]" not in root
    assert "#[pyclass]" not in root


def test_no_file_is_in_a_circle_of_references():
    graph = edges()
    done: set[tuple[str, ...]] = set()

    def visit(node, stack):
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            pytest.fail("circle: " + " -> ".join("::".join(m) or "crate" for m in cycle))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_each_layer_uses_only_the_layers_below():
    assert {m[0] for m in FILES if m} == set(RANK), "a new top-level module needs a rank here"
    bad = [
        f"{'::'.join(a)} -> {'::'.join(b)}"
        for a, targets in edges().items()
        for b in targets
        if a and b and a[0] != b[0] and RANK[a[0]] <= RANK[b[0]]
    ]
    assert not bad, "references against the layering:\n" + "\n".join(sorted(bad))


def test_the_check_sees_references():
    """The parser finds the edges it exists to check (a check that sees none passes)."""
    graph = edges()
    assert ("volume",) in graph[("stream", "epoch")]
    assert ("io", "nifti") in graph[("volume", "read")]
    assert ("volume", "channel") in graph[("volume", "block")]  # super::channel
    assert ("errors",) in graph[("masks", "remap")]
