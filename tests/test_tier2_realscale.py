"""``bench/realscale.py --quick`` (tier 2): every method runs on the full FLUX.1 width.

The smoke run builds FLUX.1's full width (hidden 3072, 24 heads, T5 4096, pooled 768) with one
double and one single block through ComfyUI's UNETLoader path, runs every method's pipeline at
128², 2 steps, and prints the extrapolation to 19 + 38 blocks. Its time bound lives in the bench
(its last table line is the wall time), not here: this test checks that it runs, that every run
succeeded at that width, and that the named lines and the extrapolation label are printed.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from comfy_fixtures import comfy  # noqa: F401

pytestmark = pytest.mark.tier2
ROOT = Path(__file__).resolve().parent.parent
METHODS = ("vanilla", "lazydrag", "attentiondrag", "kontext_vanilla", "contextdrag", "dragflow")


def test_realscale_quick_runs_every_method_at_full_width(tmp_path, comfy):
    out = tmp_path / "quick.json"
    r = subprocess.run([sys.executable, "bench/realscale.py", "--quick", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["quick"] and res["depth"] == [1, 1]
    # FLUX.1's width at full scale: 11.9 B parameters at 19 + 38 blocks
    assert 11.5e9 < res["parameters_full_depth"] < 12.5e9
    assert res["weights"]["fp8"]["stored"] == "torch.float8_e4m3fn"
    rows = {row["name"]: row for row in res["rows"]}
    for m in METHODS:
        assert f"{m}_128" in rows, sorted(rows)
    assert "lazydrag_128_cache_paired" in rows and "vanilla_128_fp8" in rows
    for name, row in rows.items():
        assert "error" not in row and "skipped" not in row, (name, row)
        assert row["seconds"] > 0
        ext = row["extrapolated_full_depth"]
        assert ext["seconds"] > row["seconds"]           # 19 + 38 blocks take longer than 1 + 1
        assert ext["device_bytes"] >= ext["weights_bytes"] > 10 * 1024 ** 3
    # the selective caches hold something at full width (LazyDrag's cpu cache, DragFlow's K/V bank)
    assert rows["lazydrag_128"]["cache_peak_bytes"] > 0
    assert rows["dragflow_128"]["cache_peak_bytes"] > 0
    assert rows["lazydrag_128_cache_paired"]["cache_peak_bytes"] == 0
    text = r.stdout
    assert "EXTRAPOLATION" in text
    for m in ("lazydrag", "dragflow", "contextdrag", "attentiondrag", "vanilla"):
        assert re.search(rf"^realscale_{m}_128_s: [0-9.]+$", text, re.M), m
        assert re.search(rf"^realscale_{m}_128_gib: [0-9.]+$", text, re.M), m
    assert re.search(r"^wall time [0-9.]+ s$", text, re.M)
