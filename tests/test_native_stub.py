"""The ``_native.pyi`` stub says what the extension does: the same names, the same
signatures (parameter names, kinds, which have defaults), and return values of the shape
its annotations give (tuples of the stated length and types, TypedDicts with exactly their
keys), checked by calling every function on small inputs."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path

import numpy as np
import pytest

native = pytest.importorskip("qgfast._native")
STUB = Path(native.__file__).parent / "_native.pyi"


@pytest.fixture(scope="module")
def stub() -> types.ModuleType:
    """The stub executed as a module (a stub is valid Python), so its annotations resolve."""
    module = types.ModuleType("_native_stub")
    exec(compile(STUB.read_text(), str(STUB), "exec"), module.__dict__)
    return module


def _declared(module) -> set[str]:
    """Names the stub defines or annotates (``__version__: str``), less its imports."""
    names = set(vars(module)) | set(vars(module).get("__annotations__", {}))
    return {n for n in names if not n.startswith("__") or n == "__version__"} - {
        "Any",
        "PathLike",
        "Path",
        "TypedDict",
        "np",
    }


def test_stub_names_exactly_what_the_extension_exports(stub):
    typed_dicts = {n for n, v in vars(stub).items() if typing.is_typeddict(v)}
    exported = {name for name in dir(native) if not name.startswith("__") or name == "__version__"}
    assert _declared(stub) - typed_dicts == exported


def _params(sig: inspect.Signature) -> list[tuple[str, int, bool]]:
    return [
        (p.name, p.kind, p.default is not inspect.Parameter.empty)
        for p in sig.parameters.values()
        if p.name != "self"
    ]


def _native_callables():
    for name in dir(native):
        obj = getattr(native, name)
        if inspect.isbuiltin(obj):
            yield name, obj, name
        elif isinstance(obj, type) and not issubclass(obj, BaseException):
            yield name, obj, f"{name}.__init__"
            for attr, member in vars(obj).items():
                if not attr.startswith("__") and callable(member):
                    yield f"{name}.{attr}", member, f"{name}.{attr}"


@pytest.mark.parametrize(("name", "obj", "stub_name"), list(_native_callables()), ids=str)
def test_signatures_match(stub, name, obj, stub_name):
    if name in ("EpochIterator", "BatchBuffer"):
        return  # not constructible from Python: the stub's __init__ is only for readers
    target = stub
    for part in stub_name.split("."):
        target = getattr(target, part)
    ours = _params(inspect.signature(target))
    theirs = _params(inspect.signature(obj))
    assert ours == theirs, f"{name}: stub {ours} != extension {theirs}"


def conforms(value, hint) -> bool:
    """Whether ``value`` has the shape of the annotation ``hint`` (the subset of typing the
    stub uses)."""
    if hint is typing.Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, h) for h in typing.get_args(hint))
    if typing.is_typeddict(hint):
        fields = typing.get_type_hints(hint)
        return (
            isinstance(value, dict)
            and set(value) == set(fields)
            and all(conforms(value[k], t) for k, t in fields.items())
        )
    if origin is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(conforms(v, t) for v, t in zip(value, args, strict=True))
        )
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if origin is dict:
        key, val = typing.get_args(hint)
        return isinstance(value, dict) and all(
            conforms(k, key) and conforms(v, val) for k, v in value.items()
        )
    if isinstance(hint, type) and hint.__module__ == "_native_stub":
        hint = getattr(native, hint.__name__)  # a stub class stands for the native one
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _returns(stub, dotted: str):
    target = stub
    for part in dotted.split("."):
        target = getattr(target, part)
    return typing.get_type_hints(target, vars(stub))["return"]


def test_returns_have_the_stated_shape(stub, tmp_path):
    from qgfast.data import write_nifti

    image = tmp_path / "case_0000.nii"
    label = tmp_path / "case.nii"
    rng = np.random.default_rng(0)
    write_nifti(image, rng.integers(0, 200, (9, 8, 7)).astype(np.int16))
    write_nifti(label, (rng.random((9, 8, 7)) > 0.6).astype(np.uint8))
    mask = (rng.random((2, 6, 5)) > 0.5).astype(np.uint8)
    ids = np.arange(3, dtype=np.int64)
    calls = {
        "nifti_header": lambda: native.nifti_header(image),
        "read_nifti": lambda: native.read_nifti(image),
        "write_volume_stats": lambda: native.write_volume_stats(label, "label"),
        "build_info": lambda: native.build_info(),
        "label_components": lambda: native.label_components(mask),
        "counter_uniforms": lambda: native.counter_uniforms(1, 2, ids, ids),
        "counter_below": lambda: native.counter_below(1, 2, ids, ids, 0.5),
        "gather_nearest_u8": lambda: native.gather_nearest_u8(mask, [[np.zeros((1, 1, 1))]] * 2),
        "shape_fill_u8": lambda: native.shape_fill_u8(mask),
        "gather_separable_u8": lambda: native.gather_separable_u8(
            mask, [np.zeros((2, 6), np.int64), np.full((2, 5), -1, np.int64)]
        ),
        "gaussian_filter_f32": lambda: native.gaussian_filter_f32(
            mask.astype(np.float32), np.array([0.25, 0.5, 0.25], np.float32)
        ),
        "axis_profiles_u8": lambda: native.axis_profiles_u8(mask),
        "cross_moments_u8": lambda: native.cross_moments_u8(mask),
        "quadric_fill_u8": lambda: native.quadric_fill_u8(
            [2, 6, 5], np.ones((2, 2)), np.ones((2, 2, 2)), np.ones(2), np.ones(2, bool)
        ),
        "smallest_spread_u8": lambda: native.smallest_spread_u8(
            [2, 6, 5], np.ones((2, 2)), np.ones((2, 2)), np.array([3, 0])
        ),
        "kth_candidates_u8": lambda: native.kth_candidates_u8(mask, True, np.full((2, 3), 0.5)),
        "paint_blobs_u8": lambda: native.paint_blobs_u8(
            mask, np.ones((2, 1, 2), np.int64), np.ones((2, 1, 2), np.int64), 1
        ),
        "select_components_u8": lambda: native.select_components_u8(mask),
        "counter_normals": lambda: native.counter_normals(1, 8, ids, 5),
        "morph_cube_u8": lambda: native.morph_cube_u8(mask, 1, True),
        "smooth_threshold_u8": lambda: native.smooth_threshold_u8(
            mask, np.array([0.25, 0.5, 0.25], np.float32)
        ),
        "elastic_u8": lambda: native.elastic_u8(
            mask, 2.0, np.array([0.25, 0.5, 0.25], np.float32), 1, 8, ids[:2]
        ),
        "label_counts_u8": lambda: native.label_counts_u8(
            mask.reshape(2, -1), mask[:1].reshape(1, -1), 2, [0, 1]
        ),
        "_selftest_fail": lambda: None,  # raises by design (tests/test_native.py)
    }
    functions = {n for n in dir(native) if inspect.isbuiltin(getattr(native, n))}
    assert set(calls) == functions, "a new function needs a call here"
    for name, call in calls.items():
        value = call()
        assert conforms(value, _returns(stub, name)), f"{name} returned {value!r:.300}"
    assert conforms(native.build_info("version"), _returns(stub, "build_info"))

    from qgfast.data import VolumeStream

    stream = VolumeStream(
        [{"images": [image], "label": label}], (4, 4, 4), labeled_batch_size=1, threads=1
    )
    config = stream.config
    assert conforms(config.fields(), _returns(stub, "StreamConfig.fields"))
    core = native.VolumeStreamCore([[str(image)]], [str(label)], [0], [], config, 0, 1)
    epoch = core.start(0)
    assert conforms(epoch, _returns(stub, "VolumeStreamCore.start"))
    assert conforms(epoch.n_batches, int)
    assert conforms(next(epoch), _returns(stub, "EpochIterator.__next__"))
    assert conforms(epoch.close(), _returns(stub, "EpochIterator.close"))
    assert conforms(core.stats(), _returns(stub, "VolumeStreamCore.stats"))
