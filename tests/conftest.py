"""Test setup: the pack is imported as the package ``fluxdrag`` (its folder name has a dash),
and ComfyUI, when present, is found at ``$COMFYUI_PATH`` or ``~/comfy/ComfyUI``."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_pack() -> None:
    if "fluxdrag" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "fluxdrag", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fluxdrag"] = mod
    spec.loader.exec_module(mod)


_load_pack()

from fluxdrag.tools.comfy_env import find_comfyui  # noqa: E402

COMFYUI = find_comfyui()
_SKIP_LINE = (
    "tier 2 skipped: no ComfyUI checkout found (set COMFYUI_PATH or put one at ~/comfy/ComfyUI)"
)


def pytest_report_header(config):
    return f"ComfyUI for tier 2: {COMFYUI}" if COMFYUI else _SKIP_LINE


def pytest_collection_modifyitems(config, items):
    if COMFYUI:
        return
    skip = pytest.mark.skip(reason=_SKIP_LINE)
    for item in items:
        if "tier2" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not COMFYUI:
        terminalreporter.write_line(_SKIP_LINE)
