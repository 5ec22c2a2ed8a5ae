"""A restricted unpickler for data files such as DragBench's ``meta_data.pkl`` (issue 7).

``pickle.load`` runs whatever callable a file names (``os.system``, ``eval``, ...), so a downloaded
benchmark file must never go through it. :func:`safe_load` admits only what plain data and numpy
arrays need to be rebuilt:

* containers and scalars that pickle builds with its own opcodes (dict, list, tuple, str, bytes,
  int, float, bool, None) plus ``set``, ``frozenset``, ``bytearray``, ``complex`` and
  ``collections.OrderedDict``;
* numpy arrays, dtypes and scalars: ``numpy.ndarray``, ``numpy.dtype``, and the rebuild helpers
  ``_reconstruct`` / ``scalar`` (``numpy.core.multiarray`` or, numpy >= 2, ``numpy._core.
  multiarray``) and ``_frombuffer`` (``numpy[._]core.numeric``, pickle protocol 5);
* ``_codecs.encode`` only with the ``latin1`` codec (how protocol-2 pickles store bytes).

Python 2 names that protocols 0-2 write (``__builtin__.set``) are mapped as pickle itself maps
them. Every other global is refused with :class:`UnsafePickleError` *before* anything is called,
so a malicious file has no side effect. Names are resolved to the objects listed here, never imported
by the name the file gives. Not from a paper; no documented guesses.
"""
from __future__ import annotations

import _compat_pickle
import collections
import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import public_name

_NUMPY_HELPERS = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_BUILTINS: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")

#: every (module, name) a file may reference
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    set(_BUILTINS)
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    | {(f"numpy.{core}.{mod}", name) for core in ("core", "_core") for mod, name in _NUMPY_HELPERS}
)


@public_name
class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something other than plain data or numpy arrays; nothing was run."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to latin1 (py2-compatible bytes in protocol-2 pickles)."""
    if not isinstance(text, str) or str(encoding).lower() not in LATIN1 or errors != "strict":
        raise UnsafePickleError(
            f"refused _codecs.encode({type(text).__name__}, {encoding!r}, {errors!r}): only "
            "latin1 text-to-bytes is allowed")
    return text.encode("latin1")


def _numpy_helper(mod: str, name: str) -> Callable[..., Any]:
    """The numpy rebuild helper ``name`` of ``numpy[._]core.<mod>`` for the installed numpy."""
    for core in ("numpy._core", "numpy.core"):
        try:
            m = importlib.import_module(f"{core}.{mod}")
        except ImportError:
            continue
        fn = getattr(m, name, None)
        if fn is not None:
            return fn
    raise UnsafePickleError(f"this numpy has no {mod}.{name} to rebuild the array with")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns the objects in ALLOWED_GLOBALS."""

    def find_class(self, module: str, name: str) -> Any:
        # protocol < 3 writes Python 2 names (__builtin__.set): map them as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: this file may only hold numpy arrays and plain "
                "data (dict, list, str, numbers); it references other code, which is never run. "
                "If the file is yours, re-save it with arrays and plain containers only.")
        if key in _BUILTINS:
            return _BUILTINS[key]
        if key == ("_codecs", "encode"):
            return _latin1_encode
        import numpy as np

        if key == ("numpy", "ndarray"):
            return np.ndarray
        if key == ("numpy", "dtype"):
            return np.dtype
        return _numpy_helper(module.rsplit(".", 1)[1], name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: this file may only hold plain data")


def safe_loads(data: bytes) -> Any:
    """Unpickle bytes allowing only plain data and numpy arrays (else :class:`UnsafePickleError`)."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def safe_load(file: str | Path | BinaryIO) -> Any:
    """Unpickle a file (path or binary file object) with :class:`RestrictedUnpickler`."""
    if isinstance(file, (str, Path)):
        with open(file, "rb") as f:
            return RestrictedUnpickler(f).load()
    return RestrictedUnpickler(file).load()
