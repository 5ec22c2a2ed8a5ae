"""Dev tool: the template thumbnails (``workflows/<name>.jpg``) from real runs.

    python -m scripts.make_thumbnails [name ...]   # needs ComfyUI (COMFYUI_PATH or ~/comfy/ComfyUI)

ComfyUI's template browser shows ``/api/workflow_templates/<pack>/<name>.jpg`` for a custom
node template, i.e. the ``.jpg`` next to the workflow. This starts a server with the pack, runs
each toy workflow as shipped (``workflows/api/toy_*_api.json``: the bundled toy model, no
download) and tiles what it saved: source, the method's preview, the result, the ground truth.
A workflow that needs FLUX (or SD1.5) weights gets the thumbnail of the toy run of the same
method, labelled so (ContextDrag's is the toy Kontext run). A few minutes on a CPU (DragFlow's
optimisation is most of it).

Each edit's quality against the scene's ground truth is measured as the toy-world benchmark does
(``bench/toybench/metrics.py``: MD = distance in tokens between the dragged object's detected
centre and its ground-truth centre; IoU of its mask), printed, and written on the thumbnail, so a
thumbnail shows a failure as one. The result latent is saved for this with a SaveLatent node
added to the queued graph (not to the shipped workflow).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tools.comfy_env import find_comfyui, not_found_message
from tools.comfy_server import start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent

WF = ROOT / "workflows"
API = WF / "api"
TILE, PAD, CAPTION, BANNER = 240, 8, 18, 52
# shipped workflow -> (toy workflow whose run it shows, banner)
NEEDS_WEIGHTS = "toy model run - this workflow needs {} weights"
THUMBS = {
    "toy_invert_reconstruct": ("toy_invert_reconstruct", "toy model - no download"),
    "toy_lazydrag": ("toy_lazydrag", "toy model - no download"),
    "toy_dragflow": ("toy_dragflow", "toy model - no download"),
    "toy_attentiondrag": ("toy_attentiondrag", "toy model - no download"),
    "toy_contextdrag": ("toy_contextdrag", "toy Kontext - no download"),
    "invert_reconstruct": ("toy_invert_reconstruct", NEEDS_WEIGHTS.format("FLUX")),
    "lazydrag_flux": ("toy_lazydrag", NEEDS_WEIGHTS.format("FLUX")),
    "dragflow_flux": ("toy_dragflow", NEEDS_WEIGHTS.format("FLUX")),
    "dragflow_redux_flux": ("toy_dragflow", NEEDS_WEIGHTS.format("FLUX + Redux")),
    "attentiondrag_flux": ("toy_attentiondrag", NEEDS_WEIGHTS.format("FLUX")),
    "attentiondrag_sd15": ("toy_attentiondrag", NEEDS_WEIGHTS.format("SD1.5")),
    "contextdrag_kontext": ("toy_contextdrag", NEEDS_WEIGHTS.format("FLUX.1 Kontext")),
}
CAPTIONS = {"source": "source", "preview": "method preview", "edit": "result", "truth": "ground truth"}


def tiles_image(tiles: list, banner: str):
    """A 2-column grid of captioned tiles under a banner line."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    cols = 2
    rows = (len(tiles) + cols - 1) // cols
    w = cols * TILE + (cols + 1) * PAD
    h = BANNER + rows * (TILE + CAPTION + PAD) + PAD
    out = Image.new("RGB", (w, h), (30, 30, 30))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(banner.split("\n")):
        draw.text((PAD, 9 + 19 * i), line, fill=(255, 216, 77) if i == 0 else (160, 230, 160), font=font)
    for k, (caption, im) in enumerate(tiles):
        x = PAD + (k % cols) * (TILE + PAD)
        y = BANNER + (k // cols) * (TILE + CAPTION + PAD)
        draw.text((x, y), caption, fill=(220, 220, 220), font=font)
        out.paste(im.convert("RGB").resize((TILE, TILE)), (x, y + CAPTION))
    return out


def run_toy(client, name: str) -> tuple[dict, str]:
    """({"source"|"truth"|"preview"|"edit": PIL image} saved by one toy workflow run, the edit's
    metrics against the scene's ground truth as one line)."""
    from PIL import Image

    api = json.loads((API / f"{name}_api.json").read_text(encoding="utf-8"))
    result = api["20"]["inputs"]["latent"]  # the "Result image" node's latent (make_workflows)
    api["90"] = {"class_type": "SaveLatent", "inputs": {"samples": result, "filename_prefix": f"thumb/{name}"}}
    entry = client.run(api, timeout=1800)
    images = {p.name.split("_")[-3]: Image.open(p).copy() for p in client.output_files(entry)}
    [latent_file] = client.output_files({"outputs": {"90": entry["outputs"]["90"]}}, kind="latents")
    scene_node = next(n for n in api.values() if n["class_type"] == "FluxDragToyScene")["inputs"]
    return images, measure(latent_file, scene_node, name)


def measure(latent_file: Path, scene_inputs: dict, name: str) -> str:
    """MD / IoU of the saved result against the scene's ground truth (reconstruction: the RMS
    error against the source, in latent units)."""
    import safetensors.torch

    from bench.toybench.metrics import edit_metrics
    from fluxdrag.toyworld.model import comfy_to_scene_latent
    from fluxdrag.toyworld.scenes import make_scene

    scene = make_scene(int(scene_inputs["seed"]), scene_inputs["family"], scene_inputs["case"])
    samples = safetensors.torch.load_file(str(latent_file))["latent_tensor"].float()
    edited = comfy_to_scene_latent(samples)[0]
    if name == "toy_invert_reconstruct":
        rms = float((edited - scene.latent).pow(2).mean().sqrt())
        return f"reconstruction RMS {rms:.3f} vs source"
    m = edit_metrics(scene, edited)
    ref = edit_metrics(scene, scene.latent)  # no edit
    return f"MD {m['md']:.2f} tok (no edit {ref['md']:.2f}), IoU {m['iou']:.2f} vs truth"


def main(only: list[str] | None = None) -> int:
    comfyui = find_comfyui()
    if comfyui is None:
        print(not_found_message(), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        client = start_server(comfyui, Path(tmp), timeout=300)
        try:
            runs, scores = {}, {}
            todo = {k: v for k, v in THUMBS.items() if not only or k in only}
            for toy in sorted({t for t, _ in todo.values()}):
                print("running", toy, flush=True)
                runs[toy], scores[toy] = run_toy(client, toy)
                print(f"  {toy}: {scores[toy]}", flush=True)
            for name, (toy, banner) in todo.items():
                saved = runs[toy]
                banner = f"{banner}\n{scores[toy]}"
                tiles = [(CAPTIONS[k], saved[k]) for k in ("source", "preview", "edit", "truth")
                         if k in saved]
                if toy == "toy_invert_reconstruct":
                    tiles = [("source", saved["source"]), ("reconstruction", saved["edit"])]
                tiles_image(tiles, banner).save(WF / f"{name}.jpg", quality=88)
                print("wrote", name, flush=True)
        finally:
            stop_server(client)
    missing = [p.stem for p in WF.glob("*.json") if not p.with_suffix(".jpg").is_file()]
    if missing:
        print("no thumbnail for:", ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
