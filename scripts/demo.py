"""The pack's main job on the bundled toy model: a LazyDrag edit through ComfyUI's execution.

    python -m scripts.demo [--seed 3] [--case move] [--steps 20] [--out out/demo.png]

Starts ComfyUI (``$COMFYUI_PATH``, else the ComfyUI whose ``custom_nodes`` holds this pack, else
``~/comfy/ComfyUI``) on a free loopback port with this pack loaded from where it lies (no symlink,
no copy; every folder the server writes is temporary), queues a graph — Toy Model Loader → Toy
Scene → Correspondence Map → Invert (Uni-Inv, caching for the map) → LazyDrag Patch → Sample From
Inversion — over HTTP, and writes
``out/demo.png``: the source with the drag arrows | the LazyDrag result | the ground truth.
Runs on a CPU in well under a minute.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):   # run as a file (python scripts/demo.py): the pack's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.comfy_env import find_comfyui, not_found_message  # noqa: E402
from tools.comfy_server import start_server, stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def node(class_type: str, title: str, **inputs) -> dict:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def demo_graph(seed: int, family: str, case: str, steps: int) -> dict:
    return {
        "1": node("FluxDragToyModelLoader", "Toy model", family="any", guidance=3.5),
        "2": node("FluxDragToyScene", "Toy scene", seed=seed, family=family, case=case),
        "3": node("FluxDragCorrespondenceMap", "Correspondence map", drag_instructions=["2", 1],
                  latent=["2", 0], transition_width=1, activation=0.8, seed=seed, image=["2", 3]),
        "4": node("FluxDragInvert", "Invert", model=["1", 0], latent=["2", 0], positive=["1", 1],
                  steps=steps, solver="uni_inv", strength=1.0, scheduler="simple", guidance=3.5,
                  edit_map=["3", 0], cache_policy="cpu", cache_budget_gb=0.0),
        "5": node("FluxDragLazyDragPatch", "LazyDrag patch", model=["1", 0], inversion=["4", 1], map=["3", 0],
                  background=True, identity=True, refine=True, mask_text=True, h_max=0.8, hold=0.2, end=0.6),
        "6": node("FluxDragSampleFromInversion", "Sample", model=["5", 0], inversion=["4", 1],
                  positive=["1", 1], solver="auto", cfg=1.0, latent=["5", 1]),
        "7": node("FluxDragToyLatentToImage", "Result image", latent=["6", 0]),
        "8": node("FluxDragToyLatentToImage", "Ground truth image", latent=["2", 2]),
        "9": node("SaveImage", "Save result", images=["7", 0], filename_prefix="demo_result"),
        "10": node("SaveImage", "Save ground truth", images=["8", 0], filename_prefix="demo_truth"),
        "11": node("SaveImage", "Save source", images=["2", 3], filename_prefix="demo_source"),
    }


def compose(source: Path, result: Path, truth: Path, drags: dict, out: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from fluxdrag.core.preview import draw_arrows

    def load(p):
        return torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0)

    src = draw_arrows(load(source), [d["handle"] for d in drags["drags"]],
                      [d["target"] for d in drags["drags"]])
    tiles = [src, load(result), load(truth)]
    h, w = tiles[0].shape[:2]
    pad, label_h = 8, 18
    canvas = Image.new("RGB", (3 * w + 4 * pad, h + 2 * pad + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (t, name) in enumerate(zip(tiles, ("source + drags", "LazyDrag (toy FLUX)", "ground truth"))):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray((t.clamp(0, 1).numpy() * 255).astype("uint8")), (x, pad + label_h))
        draw.text((x, pad), name, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--family", default="single")
    ap.add_argument("--case", default="move")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo.png")
    args = ap.parse_args(argv)
    comfyui = find_comfyui()
    if comfyui is None:
        print(not_found_message(), file=sys.stderr)
        return 2
    from fluxdrag.toyworld.scenes import make_scene

    drags = make_scene(args.seed, args.family, args.case).drags
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        print(f"starting ComfyUI from {comfyui} ...")
        client = start_server(comfyui, Path(tmp))
        try:
            entry = client.run(demo_graph(args.seed, args.family, args.case, args.steps), timeout=600)
            files = {p.name.split("_")[1]: p for p in client.output_files(entry)}
            compose(files["source"], files["result"], files["truth"], drags, args.out)
        finally:
            stop_server(client)
    print(f"wrote {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
