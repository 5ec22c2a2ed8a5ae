"""Test setup: the runtime is the package ``fluxdrag`` and the dev packages are ``bench``, ``tools``
and ``scripts``, all importable because ``pytest.ini`` puts the repository root on ``sys.path``
(``pythonpath = .``). ComfyUI is found by ``tools/comfy_env.find_comfyui`` ($COMFYUI_PATH, the
ComfyUI holding the pack, ~/comfy/ComfyUI).

Tier 2 (marked ``tier2``) needs that ComfyUI. Locally it is skipped with one line when there is
none; under ``CI=true`` it is required: a missing ComfyUI, or any tier-2 test that skips for any
reason (no server, no browser, ...), fails the run.
"""
from __future__ import annotations

import os

import pytest

from tools.comfy_env import find_comfyui, not_found_message

COMFYUI = find_comfyui()
REQUIRE_TIER2 = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
_SKIP_LINE = "tier 2 skipped: " + not_found_message()
_tier2_skips: list[str] = []


def pytest_report_header(config):
    head = f"ComfyUI for tier 2: {COMFYUI}" if COMFYUI else _SKIP_LINE
    return head + (" (CI=true: tier 2 required, a tier-2 skip fails the run)" if REQUIRE_TIER2 else "")


def pytest_collection_modifyitems(config, items):
    if COMFYUI:
        return
    skip = pytest.mark.skip(reason=_SKIP_LINE)
    for item in items:
        if "tier2" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    # an expected failure (xfail) is reported as skipped too; it ran, so it is not a skip here
    if report.skipped and "tier2" in report.keywords and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _tier2_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_TIER2 and _tier2_skips and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if not COMFYUI:
        terminalreporter.write_line(_SKIP_LINE)
    if REQUIRE_TIER2 and _tier2_skips:
        terminalreporter.write_line(f"FAILED: CI=true requires tier 2, but {len(_tier2_skips)} tier-2 "
                                    "test(s) skipped:", red=True)
        for line in _tier2_skips[:20]:
            terminalreporter.write_line("  " + line)
