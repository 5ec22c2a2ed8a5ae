"""Test setup: the pack is imported as the package ``fluxdrag`` (its folder name has a dash),
and ComfyUI, when present, is found at ``$COMFYUI_PATH`` or ``~/comfy/ComfyUI``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import fluxdrag_bootstrap  # noqa: E402,F401  (registers the pack as ``fluxdrag``)
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
