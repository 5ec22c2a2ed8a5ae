"""Tier 1: the restricted unpickler refuses code and admits numpy arrays; DragBench samples load.

No ComfyUI needed. The malicious pickles are real: one of them is shown to run its payload under
plain ``pickle.loads`` (in a subprocess), and the restricted loader leaves no trace of it.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fluxdrag.core.safe_pickle import ALLOWED_GLOBALS, UnsafePickleError, safe_load, safe_loads

ROOT = Path(__file__).resolve().parent.parent


class _System:
    """Pickles as os.system(cmd): the classic malicious pickle."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def _global_pickle(module: str, name: str, arg: str) -> bytes:
    """Protocol-2 bytes calling module.name(arg), written by hand (GLOBAL, then REDUCE)."""
    a = arg.encode()
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\nX"
            + len(a).to_bytes(4, "little") + a + b"\x85R.")


def test_plain_pickle_would_run_the_payload(tmp_path):
    """Sanity check of the test payload itself: stock pickle executes it."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_System(f"echo pwned > '{marker}'"))
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, check=True, timeout=60)
    assert marker.read_text().strip() == "pwned"


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_refused_without_side_effect(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = {"points": [[1, 2], [3, 4]], "mask": _System(f"echo pwned > '{marker}'")}
    data = pickle.dumps(payload, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"refused to load (posix|os|nt)\.system"):
        safe_loads(data)
    assert not marker.exists()
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError):
        safe_load(path)
    with open(path, "rb") as f, pytest.raises(UnsafePickleError):
        safe_load(f)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("subprocess", "Popen"), ("os", "system"), ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"), ("numpy.core.multiarray", "frombuffer"),
    ("torch", "load"), ("copyreg", "_reconstructor"), ("pickle", "loads"),
])
def test_other_globals_refused(module, name):
    with pytest.raises(UnsafePickleError, match=f"refused to load {module}.{name}"):
        safe_loads(_global_pickle(module, name, "x"))


def test_eval_object_and_codecs_misuse_refused():
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_loads(pickle.dumps(_Eval(), protocol=4))
    # _codecs.encode is admitted only as latin1 text -> bytes (how protocol 2 stores bytes)
    bad = (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x06\x00\x00\x00rot_13\x86R.")
    with pytest.raises(UnsafePickleError, match="only latin1"):
        safe_loads(bad)


def test_numpy_arrays_scalars_and_containers_accepted():
    rng = np.random.default_rng(0)
    obj = {
        "prompt": "a photo of a cat",
        "points": [[10, 20], [30, 40]],
        "mask": (rng.random((7, 5)) > 0.5).astype(np.uint8) * 255,
        "f": rng.random((3, 2)).astype(np.float32),
        "fortran": np.asfortranarray(rng.random((4, 3))),
        "structured": np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "objects": np.array([1, "two", None], dtype=object),
        "scalars": (np.float32(1.5), np.int64(-3), np.bool_(True)),
        "sets": ({1, 2}, frozenset({"x"})),
        "bytes": (b"\x00\xff", bytearray(b"ab")),
        "ordered": collections.OrderedDict(a=1),
        "complex": 1 + 2j,
    }
    for protocol in (0, 2, 3, 4, 5):
        back = safe_loads(pickle.dumps(obj, protocol=protocol))
        assert back.keys() == obj.keys()
        for k in ("mask", "f", "fortran", "structured"):
            assert back[k].dtype == obj[k].dtype and np.array_equal(back[k], obj[k]), (protocol, k)
        assert back["fortran"].flags.f_contiguous
        assert list(back["objects"]) == [1, "two", None]
        assert back["scalars"] == obj["scalars"] and type(back["scalars"][0]) is np.float32
        assert back["sets"] == obj["sets"] and back["bytes"] == obj["bytes"]
        assert back["ordered"] == obj["ordered"] and back["complex"] == obj["complex"]
        assert back["prompt"] == obj["prompt"] and back["points"] == obj["points"]


def test_allow_list_is_small_and_has_no_callables_beyond_numpy_rebuild():
    modules = {m for m, _ in ALLOWED_GLOBALS}
    assert modules <= {"builtins", "collections", "_codecs", "numpy", "numpy.core.multiarray",
                       "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}
    assert len(ALLOWED_GLOBALS) == 14


# ------------------------------------------------------------------------------------------------
# DragBench samples (scripts/dragbench_batch.py)


def _batch():
    from scripts import dragbench_batch

    return dragbench_batch


def _sample(folder: Path, size=(100, 70), points=((10, 20), (50, 20)), mask=True, meta=None):
    folder.mkdir(parents=True)
    Image.new("RGB", size, (200, 30, 30)).save(folder / "original_image.png")
    W, H = size
    m = np.zeros((H, W), np.uint8)
    m[0:35, 0:50] = 255
    if meta is None:
        meta = {"prompt": "a red card", "points": [list(p) for p in points],
                "mask": m if mask else None}
    with open(folder / "meta_data.pkl", "wb") as f:
        pickle.dump(meta, f)
    return folder


def test_dragbench_sample_is_read_and_prepared(tmp_path):
    db = _batch()
    _sample(tmp_path / "animals" / "s1")
    _sample(tmp_path / "animals" / "s2", points=((1, 1), (2, 2), (3, 3), (60, 60)), mask=False)
    (tmp_path / "animals" / "not_a_sample").mkdir()
    folders = db.find_samples(tmp_path)
    assert [f.name for f in folders] == ["s1", "s2"]
    s = db.load_sample(folders[0], tmp_path)
    assert s.key == "animals/s1" and s.prompt == "a red card" and s.orig_size == (100, 70)
    assert s.image.size == (112, 80)  # padded up to multiples of 16 (scale 1)
    import json
    doc = json.loads(s.drags_json)
    assert doc["image_size"] == [112, 80]
    # pixel index i -> centre i + 0.5 (no scaling)
    [d] = doc["drags"]
    assert d["handle"] == pytest.approx([10.5, 20.5])
    assert d["target"] == pytest.approx([50.5, 20.5])
    from fluxdrag.core.instructions import parse_instructions
    mask = parse_instructions(doc).mask
    assert mask.shape == (80, 112)
    # the 50x35 editable box; the pad is not editable
    assert mask[:35, :50].all() and not mask[35:].any() and not mask[:, 50:].any()
    s2 = db.load_sample(folders[1], tmp_path, long_side=48)
    assert s2.image.size == (48, 48) and s2.geometry.content == (48, 34) and s2.n_drags == 2
    assert json.loads(s2.drags_json)["mask"] is None


def test_dragbench_bad_samples_give_clear_errors(tmp_path):
    db = _batch()
    odd = _sample(tmp_path / "odd", points=((1, 1), (2, 2), (3, 3)))
    with pytest.raises(db.SampleError, match="odd number of points"):
        db.load_sample(odd, tmp_path)
    marker = tmp_path / "pwned"
    evil = _sample(tmp_path / "evil", meta={"points": [[1, 1], [5, 5]],
                                            "prompt": _System(f"touch '{marker}'")})
    with pytest.raises(db.SampleError, match=r"meta_data.pkl: refused to load (posix|os|nt)\.system"):
        db.load_sample(evil, tmp_path)
    assert not marker.exists()
    bad_mask = _sample(tmp_path / "mask", meta={"points": [[1, 1], [5, 5]], "prompt": "",
                                                "mask": np.ones((3, 3))})
    with pytest.raises(db.SampleError, match="mask is 3x3 but the image is 100x70"):
        db.load_sample(bad_mask, tmp_path)
    same = _sample(tmp_path / "same", points=((4, 4), (4, 4)))
    with pytest.raises(db.SampleError, match="only anchors"):
        db.load_sample(same, tmp_path)
