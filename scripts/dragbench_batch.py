#!/usr/bin/env python3
"""Run drag methods over a DragBench-format folder through ComfyUI and write outputs + a CSV.

    python -m scripts.dragbench_batch path/to/drag_bench_data --method lazydrag \\
        --method invert_reconstruct --server http://127.0.0.1:8188 --out out/dragbench

A sample is any folder holding ``original_image.png`` and ``meta_data.pkl`` (DragBench, as used by
DragDiffusion and the drag papers; folders are found through symbolic links too): the pickle is a
dict with ``points`` ([[x, y], ...] alternating handle, target, in pixels of the image), ``mask``
(an (H, W) array, > 0 = editable) and ``prompt``. The pickle is read with the restricted unpickler
of ``fluxdrag/core/safe_pickle.py`` (numpy arrays and plain data only: a file naming any other code is
refused, never run). A pair whose handle equals its target is a fixed point (an anchor: that
content stays put); every method holds it. Drags shorter than a method's resolution are kept as
anchors by the method, with a warning (in the CSV's ``warnings`` column and on stderr).

Sizes: the image is scaled by one factor (``--size``: the long side; default 1) so its aspect is
kept, to W'×H' pixels; then padded (``--fit pad``, default: edge pixels repeated on the right and
bottom, the pad not editable) or centre-cropped (``--fit crop``) to multiples of 16 (FLUX tokens).
The CSV states the scale, the content size and offset and the fit. Points are pixel indices, so a
point i maps to the pixel centre (i + 0.5) · scale + offset; the mask is resized nearest-neighbour.

For each sample and method the shipped API workflow of the method is filled in and queued with
``scripts/queue_workflow.py``'s functions (servers round-robin):

* the drags go into the workflow's ``FluxDragInstructionsJSON`` (``drags_json``) or
  ``FluxDragDragEditor`` (``drags``) nodes; a workflow with neither, whose nodes take
  ``drag_instructions`` from another node (DragFlow's region instruction), gets a
  ``FluxDragInstructionsJSON`` node with the sample's drags wired into those inputs (DragFlow then
  builds its regions from the sample's mask and points). A workflow with nowhere to put the drags
  is refused (except ``invert_reconstruct``, the no-drag baseline);
* the image into its LoadImage (uploaded);
* the sample's prompt into every text-encode node (CLIPTextEncode, CLIPTextEncodeFlux, ...)
  whose title does not say "negative" (``--prompt-to target``: only those titled "Target ...",
  ``none`` leaves them);
* ``--set NODE.INPUT=VALUE`` as in queue_workflow, applied to the workflows that have NODE.

Outputs, under ``OUT``:

* ``<method>/<category>/<sample>.png``: the edited image at the sample's original size, and
  ``<method>/<category>/<sample>.json``: its drags in original pixels (handles, targets, anchors),
  ready for an evaluator;
* ``<method>/<category>/<sample>/``: the files the workflow saved (``<node title>.png``) and the
  ``drags.json`` that ran;
* ``results.csv``: one row per sample and method, merged across runs (a row is replaced when the
  same sample and method run again); every field one line; ``error`` holds the exception's name
  and message, the whole server traceback goes to ``results.log`` beside it.

``--samples`` / ``--categories`` pick samples (names or ``category/name``, comma-separated or
repeated); ``--resume`` skips the sample and method pairs already ``ok`` in the CSV whose output
exists. One progress line per job (done / total, ok / failed, seconds per job, ETA). Exit status
1 when any row failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fluxdrag.core.instructions import from_mask_and_points
from fluxdrag.core.safe_pickle import UnsafePickleError, safe_load
from scripts import queue_workflow as qw

# method -> shipped workflow; any other workflow name or *_api.json path works too, as long as it
# follows the shipped conventions (LoadImage "Source image", a drag instructions node, SaveImage)
METHODS = {"lazydrag": "lazydrag_flux", "invert_reconstruct": "invert_reconstruct",
           "attentiondrag": "attentiondrag_flux", "attentiondrag_sd15": "attentiondrag_sd15",
           "contextdrag": "contextdrag_kontext", "dragflow": "dragflow_flux"}
NO_DRAG_METHODS = {"invert_reconstruct"}  # baselines that take no drags by design
IMAGE_FILE, META_FILE = "original_image.png", "meta_data.pkl"
TOKEN_PX = 16
FITS = ("pad", "crop")
WARNING_PREFIX = "warning: "  # fluxdrag/pipelines/common.py's prefix of a warning's progress text
# text-encode node types of ComfyUI's FLUX (and SD) workflows -> their prompt inputs
TEXT_ENCODERS = {"CLIPTextEncode": ("text",), "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
                 "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
                 "CLIPTextEncodeSDXL": ("text_g", "text_l"), "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
                 "TextEncodeQwenImageEdit": ("prompt",), "TextEncodeQwenImageEditPlus": ("prompt",)}
CSV_FIELDS = ["sample", "method", "status", "seconds", "server", "width", "height", "orig_width",
              "orig_height", "scale", "fit", "content_width", "content_height", "offset_x",
              "offset_y", "n_drags", "n_anchors", "prompt", "output", "output_orig", "drags_orig",
              "files", "warnings", "error"]
CSV_NAME, LOG_NAME = "results.csv", "results.log"


class SampleError(ValueError):
    """A sample folder that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Geometry:
    """Original W0×H0 → scaled content cw×ch (one scale) → working W×H (multiples of 16); the
    content's top-left corner lies at (ox, oy) of the working image (negative when cropped)."""

    orig: tuple[int, int]
    scale: float
    content: tuple[int, int]
    work: tuple[int, int]
    offset: tuple[int, int]
    fit: str

    def to_work(self, pts: np.ndarray) -> np.ndarray:
        """Pixel indices of the original (n, 2) → continuous working pixel coordinates."""
        sx, sy = self.content[0] / self.orig[0], self.content[1] / self.orig[1]
        return (np.asarray(pts, np.float64) + 0.5) * [sx, sy] + self.offset

    def describe(self) -> str:
        pad = (self.work[0] - self.content[0], self.work[1] - self.content[1])
        what = "padded" if self.fit == "pad" else "cropped"
        return f"{what} by {abs(pad[0])}x{abs(pad[1])} px"


@dataclass
class Sample:
    """One DragBench sample prepared for FLUX: image (RGB, multiples of 16) and instructions."""

    key: str  # "category/name", relative to the data root
    image: Image.Image
    orig_size: tuple[int, int]  # (W, H)
    prompt: str
    drags_json: str
    n_drags: int
    geometry: Geometry | None = None
    points: list | None = None  # the original points (pixel indices)
    n_anchors: int = 0
    content_image: Image.Image | None = None  # scaled, before the pad / crop


def find_samples(root: Path) -> list[Path]:
    """Folders under ``root`` (or ``root`` itself) that hold both DragBench files, sorted; symbolic
    links to folders are followed (each real folder once)."""
    root = Path(root)
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        if META_FILE in filenames and IMAGE_FILE in filenames:
            found.append(Path(dirpath))
    return sorted(found)


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def fit_geometry(w: int, h: int, long_side: int = 0, fit: str = "pad") -> Geometry:
    """One scale for both sides (the long side to ``long_side``, 0 = keep), then pad or crop to
    multiples of 16."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    m = max(w, h)
    cw = max(1, (2 * w * long_side + m) // (2 * m)) if long_side else w  # exact rounding
    ch = max(1, (2 * h * long_side + m) // (2 * m)) if long_side else h
    if fit == "pad":
        W, H = -(-cw // TOKEN_PX) * TOKEN_PX, -(-ch // TOKEN_PX) * TOKEN_PX
        off = (0, 0)
    else:
        W, H = max(TOKEN_PX, cw // TOKEN_PX * TOKEN_PX), max(TOKEN_PX, ch // TOKEN_PX * TOKEN_PX)
        off = (-((cw - W) // 2), -((ch - H) // 2))
    return Geometry((w, h), cw / w, (cw, ch), (W, H), off, fit)


def working_size(w: int, h: int, long_side: int = 0, fit: str = "pad") -> tuple[int, int]:
    """(W, H) of the working image (see :func:`fit_geometry`)."""
    return fit_geometry(w, h, long_side, fit).work


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


def _place(arr: np.ndarray, g: Geometry, edge: bool) -> np.ndarray:
    """Content-size array (ch, cw, ...) into the working canvas (pad: edge-repeated or zeros)."""
    W, H = g.work
    ox, oy = g.offset
    if g.fit == "crop":
        return arr[-oy:-oy + H, -ox:-ox + W]
    pad = [(0, H - arr.shape[0]), (0, W - arr.shape[1])] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pad, mode="edge") if edge else np.pad(arr, pad)


def load_sample(folder: Path, root: Path, long_side: int = 0, fit: str = "pad") -> Sample:
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
    g = fit_geometry(W0, H0, long_side, fit)
    W, H = g.work
    xy = g.to_work(pts)
    if g.fit == "crop" and ((xy < 0) | (xy > [W, H])).any():
        raise SampleError(f"{folder}: a point lies in the part cropped away ({g.describe()} to "
                          f"{W}x{H}); use --fit pad")
    xy = np.clip(xy, 0, [W, H])
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
        cw, ch = g.content
        rows = ((np.arange(ch) + 0.5) * H0 / ch).astype(int).clip(0, H0 - 1)
        cols = ((np.arange(cw) + 0.5) * W0 / cw).astype(int).clip(0, W0 - 1)
        m = _place(m[rows][:, cols], g, edge=False)
        if not m.any():
            m = None  # an empty mask would forbid every change: treat as "no mask"
    try:
        import torch

        ins = from_mask_and_points(None if m is None else torch.from_numpy(np.ascontiguousarray(m)),
                                   xy[0::2], xy[1::2], image_size=(W, H))
    except ValueError as e:
        raise SampleError(f"{folder}: {e}") from None
    if g.content != (W0, H0):
        image = image.resize(g.content, Image.LANCZOS)
    content_image = image
    image = Image.fromarray(_place(np.asarray(image), g, edge=True))
    prompt = meta.get("prompt") or ""
    return Sample(key=folder.relative_to(root).as_posix() if folder != root else folder.name,
                  image=image, orig_size=(W0, H0), prompt=str(prompt), drags_json=ins.to_json(),
                  n_drags=len(ins.drags), geometry=g, points=pts.tolist(),
                  n_anchors=sum(d.mode == "anchor" for d in ins.drags), content_image=content_image)


def _new_id(prompt: dict) -> str:
    return str(max([int(k) for k in prompt if k.isdigit()] + [0]) + 1)


def fill_workflow(prompt: dict, sample: Sample, image_path: Path, prompt_to: str = "all",
                  needs_drags: bool = True) -> dict:
    """A copy of an API workflow with the sample's image, drags and prompt filled in; QueueError
    when the workflow has nowhere to put the drags (and ``needs_drags``)."""
    out = json.loads(json.dumps(prompt))
    loaders = [k for k, n in out.items() if n["class_type"] == "LoadImage"]
    titled = [k for k in loaders if qw.node_title(out[k]).lower() == "source image"]
    if not loaders:
        raise qw.QueueError("the workflow has no LoadImage node for the sample image")
    out[(titled or loaders)[0]]["inputs"]["image"] = str(image_path)
    placed = False
    for n in out.values():
        if n["class_type"] == "FluxDragInstructionsJSON":
            n["inputs"]["drags_json"], placed = sample.drags_json, True
        elif n["class_type"] == "FluxDragDragEditor":
            n["inputs"]["drags"], placed = sample.drags_json, True
        elif n["class_type"] in TEXT_ENCODERS and prompt_to != "none":
            title = qw.node_title(n).lower()
            if "negative" not in title and (prompt_to == "all" or title.startswith("target")):
                for name in TEXT_ENCODERS[n["class_type"]]:
                    n["inputs"][name] = sample.prompt
    if not placed:  # e.g. DragFlow: drag_instructions from a region instruction node
        takers = [n for n in out.values()
                  if isinstance(n["inputs"].get("drag_instructions"), list)]
        if takers:
            nid = _new_id(out)
            out[nid] = {"class_type": "FluxDragInstructionsJSON",
                        "inputs": {"drags_json": sample.drags_json},
                        "_meta": {"title": "Drag instructions (DragBench sample)"}}
            for n in takers:
                n["inputs"]["drag_instructions"] = [nid, 0]
            placed = True
    if needs_drags and not placed:
        raise qw.QueueError(
            "the workflow has nowhere to put the sample's drags (no FluxDragInstructionsJSON or "
            "FluxDragDragEditor node, no node taking 'drag_instructions'): it would run on its own "
            "drags; add a FluxDragInstructionsJSON node")
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


_COUNTER = re.compile(r"_\d{5}_(?=\.[A-Za-z0-9]+$)")


def stable_names(files: list[Path]) -> list[Path]:
    """Downloaded files renamed without ComfyUI's running counter (``Save_edited_00003_.png`` →
    ``Save_edited.png``; a second file of one node gets ``_2``); an older run's file is replaced."""
    out: list[Path] = []
    for f in files:
        name = Path(_COUNTER.sub("", f.name))
        dest, k = f.with_name(name.name), 2
        while dest in out:
            dest = f.with_name(f"{name.stem}_{k}{name.suffix}")
            k += 1
        if dest != f:
            f.replace(dest)
        out.append(dest)
    return out


def edited_output(job: qw.Job) -> Path | None:
    """The downloaded edited image: from the first SaveImage not titled as a preview / map."""
    saves = [(k, qw.node_title(n)) for k, n in job.prompt.items() if n["class_type"] == "SaveImage"]
    saves.sort(key=lambda kt: any(w in kt[1].lower() for w in ("preview", "map")))
    for _, title in saves:
        slug = qw._slug(title)
        hits = [f for f in job.files if f.name == slug + f.suffix or f.name.startswith(slug + "_")]
        if hits:
            return hits[0]
    return job.files[0] if job.files else None


def write_back(edited: Path, sample: Sample, dest: Path) -> Path:
    """The edited image at the sample's original size (the working image resized to W×H first
    when a workflow rescaled it, the padding cut off / the cropped border taken from the source)."""
    g = sample.geometry
    with Image.open(edited) as im:
        img = im.convert("RGB")
    if img.size != g.work:
        img = img.resize(g.work, Image.LANCZOS)
    cw, ch = g.content
    ox, oy = g.offset
    if g.fit == "pad":
        content = img.crop((0, 0, cw, ch))
    else:  # the cropped-away border from the (scaled) source
        content = sample.content_image.copy()
        content.paste(img, (-ox, -oy))
    content = content.resize(g.orig, Image.LANCZOS) if (cw, ch) != g.orig else content
    dest.parent.mkdir(parents=True, exist_ok=True)
    content.save(dest)
    return dest


def drags_in_original_pixels(sample: Sample) -> dict:
    """The sample's drags as DragBench gives them (pixel indices of the original image)."""
    pts = sample.points or []
    pairs = list(zip(pts[0::2], pts[1::2], strict=True))
    return {"image_size": list(sample.orig_size), "points": pts,
            "handles": [h for h, _ in pairs], "targets": [t for _, t in pairs],
            "anchors": [h for h, t in pairs if list(h) == list(t)],
            "work": {"size": list(sample.geometry.work), "scale": sample.geometry.scale,
                     "content": list(sample.geometry.content),
                     "offset": list(sample.geometry.offset), "fit": sample.geometry.fit}}


# ------------------------------------------------------------------------------------------------
# CSV and log


def one_line(text: Any, limit: int = 2000) -> str:
    """A field on one line: line breaks become " | ", runs of spaces one space."""
    s = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    s = re.sub(r"\s+", " ", s)
    return s if len(s) <= limit else s[:limit - 1] + "…"


def short_error(error: str) -> str:
    """The exception's name and message from a server failure (no traceback)."""
    lines = [ln for ln in str(error).splitlines()]
    keep = []
    for ln in lines:
        if ln.startswith("Traceback (most recent call last)") or ln.startswith('  File "'):
            break
        keep.append(ln)
    text = " ".join(keep)
    m = re.search(r"node \S+ \([^)]*\): (.*)", text)
    return one_line(m.group(1) if m else text)


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: one_line(row.get(k, "")) for k in CSV_FIELDS})
    tmp.replace(path)


class Results:
    """Rows keyed by (sample, method), merged with the CSV already in the output folder."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[tuple[str, str], dict] = {(r["sample"], r["method"]): r for r in read_csv(path)}

    def put(self, row: dict) -> dict:
        self.rows[(row["sample"], row["method"])] = row
        return row

    def done(self, sample: str, method: str, out: Path) -> bool:
        r = self.rows.get((sample, method))
        return bool(r and r.get("status") == "ok" and r.get("output_orig")
                    and (out / r["output_orig"]).is_file())

    def save(self) -> None:
        write_csv(self.path, list(self.rows.values()))


def log_error(out: Path, key: str, method: str, error: str) -> None:
    with open(out / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {key} {method}\n{error.rstrip()}\n\n")


# ------------------------------------------------------------------------------------------------
# command line


def _names(values: list[str]) -> set[str]:
    return {v.strip() for s in values for v in s.split(",") if v.strip()}


def select(folders: list[Path], root: Path, samples: set[str], categories: set[str]) -> list[Path]:
    out = []
    for f in folders:
        key = f.relative_to(root).as_posix() if f != root else f.name
        cat = key.rsplit("/", 1)[0] if "/" in key else ""
        if samples and key not in samples and f.name not in samples:
            continue
        if categories and cat not in categories and cat.split("/")[-1] not in categories:
            continue
        out.append(f)
    return out


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
    ap.add_argument("--size", type=int, default=0, help="scale the long side to this first")
    ap.add_argument("--fit", choices=FITS, default="pad",
                    help="reach multiples of 16 by padding (default) or centre-cropping")
    ap.add_argument("--prompt-to", choices=["all", "target", "none"], default="all",
                    help="which text-encode nodes get the sample's prompt")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    ap.add_argument("--samples", action="append", default=[],
                    help="only these samples (name or category/name; comma-separated)")
    ap.add_argument("--categories", action="append", default=[],
                    help="only these categories (comma-separated)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N samples")
    ap.add_argument("--resume", action="store_true",
                    help="skip sample/method pairs already ok in OUT/results.csv")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per job")
    ap.add_argument("--verbose", action="store_true", help="also print every node's progress")
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
    folders = select(find_samples(args.data), args.data, _names(args.samples),
                     _names(args.categories))[: args.limit or None]
    if not folders:
        print(f"error: no samples ({IMAGE_FILE} + {META_FILE}) under {args.data}"
              f"{' matching --samples/--categories' if args.samples or args.categories else ''}",
              file=sys.stderr)
        return 1
    out = args.out.resolve()
    (out / "_inputs").mkdir(parents=True, exist_ok=True)
    results = Results(out / CSV_NAME)

    this_run: list[dict] = []
    jobs: list[tuple[dict, qw.Job, Sample]] = []
    used: set[str] = set()
    skipped = 0
    for folder in folders:
        key = folder.relative_to(args.data).as_posix() if folder != args.data else folder.name
        todo = [m for m in methods if not (args.resume and results.done(key, m, out))]
        skipped += len(methods) - len(todo)
        if not todo:
            continue
        try:
            sample = load_sample(folder, args.data, args.size, args.fit)
        except (SampleError, OSError) as e:
            for m in todo:
                this_run.append(results.put({"sample": key, "method": m, "status": "error",
                                             "error": str(e)}))
            say(f"skip {key}: {one_line(e)}")
            continue
        img_path = out / "_inputs" / (key.replace("/", "__") + ".png")
        sample.image.save(img_path)
        g = sample.geometry
        for m in todo:
            wf = methods[m]
            row = {"sample": key, "method": m, "width": g.work[0], "height": g.work[1],
                   "orig_width": g.orig[0], "orig_height": g.orig[1], "scale": f"{g.scale:.6g}",
                   "fit": f"{g.fit}: {g.describe()}", "content_width": g.content[0],
                   "content_height": g.content[1], "offset_x": g.offset[0], "offset_y": g.offset[1],
                   "n_drags": sample.n_drags, "n_anchors": sample.n_anchors,
                   "prompt": sample.prompt}
            try:
                p, u = apply_sets_where_found(wf, args.set)
                used |= u
                p = fill_workflow(p, sample, img_path, args.prompt_to, m not in NO_DRAG_METHODS)
            except qw.QueueError as e:
                this_run.append(results.put({**row, "status": "error", "error": str(e)}))
                continue
            if args.swap_test_loaders:
                p = qw.swap_test_loaders(p)
            job_dir = out / m / key
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "drags.json").write_text(sample.drags_json + "\n")
            jobs.append((row, qw.Job(p, job_dir, name=f"{m} {key}"), sample))
            this_run.append(results.put(row))
    unused = [s for s in args.set if s not in used]
    if unused and jobs:
        print(f"error: --set {', '.join(unused)} matches no node in the chosen workflows",
              file=sys.stderr)
        return 1
    for row, _, _ in jobs:
        row["status"] = "pending"
    for row in this_run:
        if row.get("status") == "error":
            log_error(out, row["sample"], row["method"], row["error"])

    of_job = {id(job): (row, sample) for row, job, sample in jobs}
    total = len(this_run)
    count = {"done": total - len(jobs), "ok": 0, "failed": total - len(jobs)}
    t0 = time.monotonic()

    def on_done(job: qw.Job) -> None:
        row, sample = of_job[id(job)]
        job.files = stable_names(job.files)
        edited = edited_output(job)
        warn = [t.removeprefix(WARNING_PREFIX) for t in dict.fromkeys(job.texts)
                if t.startswith(WARNING_PREFIX)]
        row.update(seconds=f"{job.seconds:.2f}", server=job.server,
                   output=edited.relative_to(out).as_posix() if edited else "",
                   files=";".join(f.relative_to(out).as_posix() for f in job.files),
                   warnings=" | ".join(warn))
        status, error = ("error", job.error) if job.error else ("ok", "")
        if not error and edited is None:
            status, error = "error", "the workflow saved no image"
        if status == "ok":
            try:
                base = out / row["method"] / row["sample"]
                orig = write_back(edited, sample, base.with_suffix(".png"))
                meta = base.with_suffix(".json")
                meta.write_text(json.dumps(drags_in_original_pixels(sample), indent=1) + "\n")
                row.update(output_orig=orig.relative_to(out).as_posix(),
                           drags_orig=meta.relative_to(out).as_posix())
            except OSError as e:
                status, error = "error", f"writing the original-size output: {e}"
        row.update(status=status, error=short_error(error) if error else "")
        if error:
            log_error(out, row["sample"], row["method"], error)
        count["done"] += 1
        count["ok" if status == "ok" else "failed"] += 1
        el = time.monotonic() - t0
        n_run = count["done"] - (total - len(jobs))
        per = el / max(n_run, 1)
        eta = per * (total - count["done"])
        say(f"[{count['done']}/{total}] {row['method']} {row['sample']}: {status} "
            f"({job.seconds:.1f} s) | {count['ok']} ok, {count['failed']} failed | "
            f"{per:.1f} s/job, ETA {eta:.0f} s" + (f" | {row['error']}" if error else ""))
        for w in warn:
            say(f"    warning: {w}")
        results.save()  # after every job: an interrupted batch keeps its rows

    results.save()
    if skipped:
        say(f"--resume: {skipped} sample/method pair(s) already ok, skipped")
    servers = [qw.ComfyServer(u) for u in (args.server or ["http://127.0.0.1:8188"])]
    qw.run_jobs(servers, [j for _, j, _ in jobs], args.timeout, log=say if args.verbose else None,
                on_done=on_done)
    results.save()
    failed = sum(r.get("status") != "ok" for r in this_run)
    say(f"{len(this_run) - failed}/{len(this_run)} ok in {time.monotonic() - t0:.1f} s; "
        f"results in {out / CSV_NAME}" + (f", errors in {out / LOG_NAME}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
