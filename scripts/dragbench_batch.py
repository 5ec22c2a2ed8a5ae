#!/usr/bin/env python3
"""Run drag methods over a DragBench-format folder through ComfyUI and write outputs + a CSV.

    python scripts/dragbench_batch.py path/to/drag_bench_data --method lazydrag \\
        --method invert_reconstruct --server http://127.0.0.1:8188 --out out/dragbench

A sample is any folder holding ``original_image.png`` and ``meta_data.pkl`` (DragBench, as used by
DragDiffusion and the drag papers): the pickle is a dict with ``points`` ([[x, y], ...] alternating
handle, target, in pixels of the image), ``mask`` (an (H, W) array, > 0 = editable) and
``prompt``. The pickle is read with the restricted unpickler of ``core/safe_pickle.py`` (numpy
arrays and plain data only: a file naming any other code is refused, never run).

For each sample and method the shipped API workflow of the method is filled in and queued with
``scripts/queue_workflow.py``'s functions (servers round-robin):

* the image is resized so both sides are multiples of 16 (FLUX tokens), rounded down, after an
  optional ``--size`` (long side); points are pixel indices, so a point i maps to the pixel
  centre (i + 0.5) scaled per axis; the mask is resized nearest-neighbour;
* the drags go into the workflow's ``FluxDragInstructionsJSON`` (``drags_json``) or
  ``FluxDragDragEditor`` (``drags``) node; the image into its LoadImage (uploaded);
* the sample's prompt goes into every CLIPTextEncode whose title contains "prompt"
  (``--prompt-to target`` only into those titled "Target ...", ``none`` leaves them);
* ``--set NODE.INPUT=VALUE`` as in queue_workflow, applied to the workflows that have NODE.

Outputs: ``OUT/<method>/<category>/<sample>/`` (downloaded files and the ``drags.json`` used) and
``OUT/results.csv`` (one row per sample and method; ``output`` is the edited image: the first
SaveImage whose title does not mention a preview or map). Exit status 1 when any row failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
import queue_workflow as qw  # noqa: E402

import fluxdrag_bootstrap  # noqa: E402,F401  (registers the pack as ``fluxdrag``)
from fluxdrag.core.instructions import from_mask_and_points  # noqa: E402
from fluxdrag.core.safe_pickle import UnsafePickleError, safe_load  # noqa: E402

# method -> shipped workflow; any other workflow name or *_api.json path works too, as long as it
# follows the shipped conventions (LoadImage "Source image", a drag instructions node, SaveImage)
METHODS = {"lazydrag": "lazydrag_flux", "invert_reconstruct": "invert_reconstruct",
           "attentiondrag": "attentiondrag_flux", "attentiondrag_sd15": "attentiondrag_sd15",
           "contextdrag": "contextdrag_kontext", "dragflow": "dragflow_flux"}
IMAGE_FILE, META_FILE = "original_image.png", "meta_data.pkl"
TOKEN_PX = 16
CSV_FIELDS = ["sample", "method", "status", "seconds", "server", "width", "height", "orig_width",
              "orig_height", "n_drags", "prompt", "output", "files", "error"]


class SampleError(ValueError):
    """A sample folder that cannot be used; the message says which file and why."""


@dataclass
class Sample:
    """One DragBench sample prepared for FLUX: image (RGB, multiples of 16) and instructions."""

    key: str  # "category/name", relative to the data root
    image: Image.Image
    orig_size: tuple[int, int]  # (W, H)
    prompt: str
    drags_json: str
    n_drags: int


def find_samples(root: Path) -> list[Path]:
    """Folders under ``root`` (or ``root`` itself) that hold both DragBench files, sorted."""
    root = Path(root)
    found = {p.parent for p in root.rglob(META_FILE) if (p.parent / IMAGE_FILE).is_file()}
    return sorted(found)


def working_size(w: int, h: int, long_side: int = 0) -> tuple[int, int]:
    """(W, H) after an optional resize of the long side, each rounded down to a multiple of 16."""
    s = long_side / max(w, h) if long_side else 1.0
    return (max(TOKEN_PX, int(w * s) // TOKEN_PX * TOKEN_PX),
            max(TOKEN_PX, int(h * s) // TOKEN_PX * TOKEN_PX))


def read_meta(path: Path) -> dict[str, Any]:
    """``meta_data.pkl`` through the restricted unpickler, checked for points/mask/prompt."""
    try:
        meta = safe_load(path)
    except UnsafePickleError as e:
        raise SampleError(f"{path}: {e}") from None
    except Exception as e:  # truncated / not a pickle
        raise SampleError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or "points" not in meta:
        raise SampleError(f"{path}: expected a dict with 'points', 'mask' and 'prompt'")
    return meta


def load_sample(folder: Path, root: Path, long_side: int = 0) -> Sample:
    """Read and prepare one sample (SampleError with the reason when it cannot be used)."""
    folder = Path(folder)
    meta = read_meta(folder / META_FILE)
    with Image.open(folder / IMAGE_FILE) as im:
        image = im.convert("RGB")
    W0, H0 = image.size
    pts = np.asarray(meta["points"], dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise SampleError(f"{folder / META_FILE}: 'points' must be [[x, y], ...], got shape "
                          f"{pts.shape}")
    if len(pts) % 2:
        raise SampleError(f"{folder / META_FILE}: odd number of points ({len(pts)}); DragBench "
                          "points alternate handle, target")
    W, H = working_size(W0, H0, long_side)
    scale = np.array([W / W0, H / H0])
    xy = np.clip((pts + 0.5) * scale, 0, [W, H])  # pixel index -> pixel centre, then resize
    mask = meta.get("mask")
    m = None
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m.max(axis=2)
        if m.shape != (H0, W0):
            raise SampleError(f"{folder / META_FILE}: mask is {m.shape[1]}x{m.shape[0]} but the "
                              f"image is {W0}x{H0}")
        m = m > 0
        rows = ((np.arange(H) + 0.5) * H0 / H).astype(int).clip(0, H0 - 1)
        cols = ((np.arange(W) + 0.5) * W0 / W).astype(int).clip(0, W0 - 1)
        m = m[rows][:, cols]
        if not m.any():
            m = None  # an empty mask would forbid every change: treat as "no mask"
    try:
        import torch

        ins = from_mask_and_points(None if m is None else torch.from_numpy(m), xy[0::2], xy[1::2],
                                   image_size=(W, H))
    except ValueError as e:
        raise SampleError(f"{folder}: {e}") from None
    if (W, H) != (W0, H0):
        image = image.resize((W, H), Image.LANCZOS)
    prompt = meta.get("prompt") or ""
    return Sample(key=folder.relative_to(root).as_posix() if folder != root else folder.name,
                  image=image, orig_size=(W0, H0), prompt=str(prompt), drags_json=ins.to_json(),
                  n_drags=len(ins.drags))


def fill_workflow(prompt: dict, sample: Sample, image_path: Path, prompt_to: str = "all") -> dict:
    """A copy of an API workflow with the sample's image, drags and prompt filled in."""
    out = json.loads(json.dumps(prompt))
    loaders = [k for k, n in out.items() if n["class_type"] == "LoadImage"]
    titled = [k for k in loaders if qw.node_title(out[k]).lower() == "source image"]
    if not loaders:
        raise qw.QueueError("the workflow has no LoadImage node for the sample image")
    out[(titled or loaders)[0]]["inputs"]["image"] = str(image_path)
    for n in out.values():
        if n["class_type"] == "FluxDragInstructionsJSON":
            n["inputs"]["drags_json"] = sample.drags_json
        elif n["class_type"] == "FluxDragDragEditor":
            n["inputs"]["drags"] = sample.drags_json
        elif n["class_type"] == "CLIPTextEncode" and prompt_to != "none":
            title = qw.node_title(n).lower()
            if "prompt" in title and (prompt_to == "all" or title.startswith("target")):
                n["inputs"]["text"] = sample.prompt
    return out


def apply_sets_where_found(prompt: dict, specs: list[str]) -> tuple[dict, set[str]]:
    """Apply the ``--set`` specs whose node exists in this workflow; the specs used."""
    used = set()
    for spec in specs:
        ref = qw.parse_set(spec)[0]
        try:
            qw.find_node(prompt, ref)
        except qw.QueueError:
            continue
        prompt = qw.apply_sets(prompt, [spec])
        used.add(spec)
    return prompt, used


def edited_output(job: qw.Job) -> Path | None:
    """The downloaded edited image: from the first SaveImage not titled as a preview / map."""
    saves = [(k, qw.node_title(n)) for k, n in job.prompt.items() if n["class_type"] == "SaveImage"]
    saves.sort(key=lambda kt: any(w in kt[1].lower() for w in ("preview", "map")))
    for _, title in saves:
        slug = qw._slug(title)
        hits = [f for f in job.files if f.name.startswith(slug + "_")]
        if hits:
            return hits[0]
    return job.files[0] if job.files else None


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="DragBench-format folder (searched recursively)")
    ap.add_argument("--method", action="append", default=[],
                    help=f"method(s) to run: {', '.join(METHODS)}, or any shipped workflow name / "
                         "*_api.json path (default lazydrag)")
    ap.add_argument("--server", action="append", default=[], help="ComfyUI URL (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("out/dragbench"))
    ap.add_argument("--size", type=int, default=0, help="resize the long side to this first")
    ap.add_argument("--prompt-to", choices=["all", "target", "none"], default="all",
                    help="which prompt nodes get the sample's prompt")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    ap.add_argument("--limit", type=int, default=0, help="only the first N samples")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per job")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--swap-test-loaders", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    say = (lambda t: None) if args.quiet else (lambda t: print(t, file=sys.stderr, flush=True))

    try:
        methods = {}
        for m in args.method or ["lazydrag"]:
            path = qw.resolve_workflow(METHODS.get(m, m))
            methods[m if m in METHODS else path.name.removesuffix("_api.json")] = qw.load_workflow(path)
    except qw.QueueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    folders = find_samples(args.data)[: args.limit or None]
    if not folders:
        print(f"error: no samples ({IMAGE_FILE} + {META_FILE}) under {args.data}", file=sys.stderr)
        return 1
    out = args.out.resolve()
    (out / "_inputs").mkdir(parents=True, exist_ok=True)

    rows, jobs, used = [], [], set()
    for folder in folders:
        key = folder.relative_to(args.data).as_posix() if folder != args.data else folder.name
        try:
            sample = load_sample(folder, args.data, args.size)
        except (SampleError, OSError) as e:
            for m in methods:
                rows.append({"sample": key, "method": m, "status": "error", "error": str(e)})
            say(f"skip {key}: {e}")
            continue
        img_path = out / "_inputs" / (key.replace("/", "__") + ".png")
        sample.image.save(img_path)
        for m, wf in methods.items():
            row = {"sample": key, "method": m, "width": sample.image.size[0],
                   "height": sample.image.size[1], "orig_width": sample.orig_size[0],
                   "orig_height": sample.orig_size[1], "n_drags": sample.n_drags,
                   "prompt": sample.prompt}
            try:
                p, u = apply_sets_where_found(fill_workflow(wf, sample, img_path, args.prompt_to),
                                              args.set)
            except qw.QueueError as e:
                rows.append({**row, "status": "error", "error": str(e)})
                continue
            used |= u
            if args.swap_test_loaders:
                p = qw.swap_test_loaders(p)
            job_dir = out / m / key
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "drags.json").write_text(sample.drags_json + "\n")
            jobs.append((row, qw.Job(p, job_dir, name=f"{m} {key}")))
            rows.append(row)
    unused = [s for s in args.set if s not in used]
    if unused and jobs:
        print(f"error: --set {', '.join(unused)} matches no node in the chosen workflows",
              file=sys.stderr)
        return 1

    row_of = {id(job): row for row, job in jobs}
    for row in row_of.values():
        row["status"] = "pending"

    def on_done(job: qw.Job) -> None:
        edited = edited_output(job)
        row_of[id(job)].update(status="error" if job.error else "ok", seconds=f"{job.seconds:.2f}",
                               server=job.server, error=job.error or "",
                               output=edited.relative_to(out).as_posix() if edited else "",
                               files=";".join(f.relative_to(out).as_posix() for f in job.files))
        write_csv(out / "results.csv", rows)  # after every job: an interrupted batch keeps its rows

    t0 = time.monotonic()
    write_csv(out / "results.csv", rows)
    servers = [qw.ComfyServer(u) for u in (args.server or ["http://127.0.0.1:8188"])]
    qw.run_jobs(servers, [j for _, j in jobs], args.timeout, log=say, on_done=on_done)
    write_csv(out / "results.csv", rows)
    failed = sum(r["status"] != "ok" for r in rows)
    say(f"{len(rows) - failed}/{len(rows)} ok in {time.monotonic() - t0:.1f} s; "
        f"results in {out / 'results.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
