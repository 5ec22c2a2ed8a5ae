"""Register this checkout as the importable package ``fluxdrag`` (the folder name has a dash).

Scripts, benchmarks and tests do::

    sys.path.insert(0, str(ROOT)); import fluxdrag_bootstrap  # noqa

which imports the pack as ``fluxdrag`` and takes the checkout off ``sys.path`` again, so that the
pack's ``nodes/`` never shadows ComfyUI's own ``nodes`` module.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def load_pack(name: str = "fluxdrag"):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


load_pack()
while str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
