"""Runs the editor's pure-logic JavaScript tests (``node --test js/tests/``).

Without Node.js the test skips locally; under ``CI=true`` (as ``tests/conftest.py`` reads it) a
missing Node.js fails it: CI must run the JS tests, not skip them silently."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MISSING = "Node.js not installed: JS editor tests skipped"


def ci_required(env=None) -> bool:
    """``CI`` set to 1/true/yes: the same rule as conftest's REQUIRE_TIER2."""
    return (env if env is not None else os.environ).get("CI", "").strip().lower() in ("1", "true", "yes")


def node_or_outcome(which=shutil.which, env=None) -> tuple[str | None, str]:
    """(path of node or None, what to do without it: "skip" or "fail")."""
    path = which("node")
    return path, ("fail" if ci_required(env) else "skip")


def test_missing_node_fails_under_ci_and_skips_locally():
    assert node_or_outcome(lambda _: None, {"CI": "true"}) == (None, "fail")
    assert node_or_outcome(lambda _: None, {"CI": "1"}) == (None, "fail")
    assert node_or_outcome(lambda _: None, {}) == (None, "skip")
    assert node_or_outcome(lambda _: "/usr/bin/node", {"CI": "true"})[0] == "/usr/bin/node"


def test_node_tests_pass():
    node, outcome = node_or_outcome()
    if node is None:
        if outcome == "fail":
            pytest.fail("Node.js not installed, but CI=true requires the JS editor tests: install "
                        "Node.js (18 or newer).")
        pytest.skip(MISSING)
    r = subprocess.run([node, "--test", "js/tests/"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout
