"""``bench/realscale.py --quick`` (tier 2): every method runs on the full FLUX.1 width; and
(tier 1) the GPU run's plan and table, which no CPU run exercises.

The smoke run builds FLUX.1's full width (hidden 3072, 24 heads, T5 4096, pooled 768) with one
double and one single block through ComfyUI's UNETLoader path, runs every method's pipeline at
128², 2 steps, and prints the extrapolation to 19 + 38 blocks. Its time bound lives in the bench
(its last table line is the wall time), not here: this test checks that it runs, that every run
succeeded at that width, and that the named lines and the extrapolation label are printed.
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from comfy_fixtures import comfy  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("vanilla", "lazydrag", "attentiondrag", "kontext_vanilla", "contextdrag", "dragflow")


@pytest.mark.tier2
def test_realscale_quick_runs_every_method_at_full_width(tmp_path, comfy):
    out = tmp_path / "quick.json"
    r = subprocess.run([sys.executable, "-m", "bench.realscale", "--quick", "--out", str(out)],
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
    # the selective caches hold something at full width (LazyDrag's cpu cache); DragFlow's K/V bank
    # only when its default injects K/V (off since issue 27: no measured gain, docs/dragflow.md)
    from fluxdrag.pipelines.dragflow_inputs import DragFlowSettings

    assert rows["lazydrag_128"]["cache_peak_bytes"] > 0
    kv_on = DragFlowSettings().kv_preset != "none"
    assert (rows["dragflow_128"]["cache_peak_bytes"] > 0) == kv_on
    assert rows["lazydrag_128_cache_paired"]["cache_peak_bytes"] == 0
    text = r.stdout
    assert "EXTRAPOLATION" in text
    for m in ("lazydrag", "dragflow", "contextdrag", "attentiondrag", "vanilla"):
        assert re.search(rf"^realscale_{m}_128_s: [0-9.]+$", text, re.M), m
        assert re.search(rf"^realscale_{m}_128_gib: [0-9.]+$", text, re.M), m
    assert re.search(r"^wall time [0-9.]+ s$", text, re.M)


def _realscale():
    from bench import realscale

    return realscale


def test_gpu_plan_covers_every_method_size_and_lever():
    rs = _realscale()
    args = argparse.Namespace(sizes=[512, 1024], cache_policies=["cpu", "fp8", "device", "paired"],
                              weights=["default", "fp8"], offload=True, quick=False)
    runs = rs.plan_runs(args, {})
    names = [r["name"] for r in runs]
    assert len(names) == len(set(names))
    for side in (512, 1024):
        for m in METHODS:
            assert f"{m}_{side}" in names
        for p in ("fp8", "device", "paired"):
            assert f"lazydrag_{side}_cache_{p}" in names
        assert f"lazydrag_{side}_fp8" in names and f"vanilla_{side}_fp8" in names
    for m in ("vanilla", "lazydrag", "attentiondrag", "contextdrag", "dragflow"):
        assert f"{m}_1024_offload" in names
    # priority: both sizes' methods, then fp8 at 1024², then the offload rows, then the levers
    pos = names.index
    assert pos("dragflow_1024") < pos("lazydrag_1024_fp8") < pos("lazydrag_1024_offload") < pos("lazydrag_512_cache_fp8")
    for r in runs:  # every ratio base is planned before the row that divides by it
        assert r["base"] is None or pos(r["base"]) < pos(r["name"])


def test_gpu_table_and_named_lines():
    rs = _realscale()
    gib = 1024 ** 3
    row = dict(seconds=6.5, device_peak_bytes=23 * gib, device_before_bytes=22 * gib, cache_peak_bytes=gib,
               pinned_host_peak_bytes=gib, cache_peak_by_type={})
    results = {"quick": False, "device": "NVIDIA H100 80GB HBM3", "depth": [19, 38], "t5_tokens": 256,
               "steps": {}, "wall_seconds": 400.0, "rows": [
                   dict(row, name="vanilla_512", lever="", base=None, seconds=3.0),
                   dict(row, name="lazydrag_512", lever="cache_policy cpu", base="vanilla_512", ratio=2.1),
                   dict(name="lazydrag_1024_cache_device", lever="cache_policy device", base="vanilla_1024",
                        error="OutOfMemoryError: CUDA out of memory"),
                   dict(name="dragflow_1024_fp8", lever="fp8 weights", base=None, skipped="time budget 330 s spent"),
                   dict(row, name="lazydrag_1024_offload", lever="offload", base=None, offload=True,
                        device_peak_bytes=5 * gib)]}
    text = rs.report(results)
    assert "NVIDIA H100" in text and "OutOfMemoryError" in text and "time budget" in text
    assert re.search(r"^realscale_lazydrag_512_s: 6\.500$", text, re.M)
    assert re.search(r"^realscale_lazydrag_512_gib: 23\.000$", text, re.M)
    assert re.search(r"^realscale_lazydrag_512_ratio: 2\.100$", text, re.M)
    assert re.search(r"^realscale_lazydrag_1024_offload_gib: 5\.000$", text, re.M)
    assert "realscale_lazydrag_1024_offload_s" not in text  # memory-only rows name no time
    assert "EXTRAPOLATION" not in text
