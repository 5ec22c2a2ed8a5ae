"""The README's main command: ``python -m scripts.demo`` writes its picture (tier 2)."""
import subprocess
import sys
from pathlib import Path

import pytest
from comfy_fixtures import comfy  # noqa: F401
from PIL import Image

pytestmark = pytest.mark.tier2
ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_picture(tmp_path, comfy):
    out = tmp_path / "demo.png"
    r = subprocess.run([sys.executable, "-m", "scripts.demo", "--steps", "6", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with Image.open(out) as im:
        w, h = im.size
        px = im.convert("RGB").load()
    assert (w, h) == (3 * 256 + 4 * 8, 256 + 2 * 8 + 18)
    # three picture panels, not blank: each panel has colour variation
    for i in range(3):
        x0 = 8 + i * (256 + 8)
        cols = {px[x0 + dx, 26 + dy] for dx in range(0, 256, 16) for dy in range(0, 256, 16)}
        assert len(cols) > 10
