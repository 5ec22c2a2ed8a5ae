"""Runs the editor's pure-logic JavaScript tests (``node --test js/tests/``) when Node.js exists."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed: JS editor tests skipped")
def test_node_tests_pass():
    r = subprocess.run(["node", "--test", "js/tests/"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout
