"""Dev tool: the template thumbnails (``workflows/<name>.jpg``) from real runs.

    python scripts/make_thumbnails.py [name ...]   # needs ComfyUI (COMFYUI_PATH or ~/comfy/ComfyUI)

ComfyUI's template browser shows ``/api/workflow_templates/<pack>/<name>.jpg`` for a custom
node template, i.e. the ``.jpg`` next to the workflow. This starts a server with the pack, runs
each toy workflow as shipped (``workflows/api/toy_*_api.json``: the bundled toy model, no
download) and tiles what it saved: source, the method's preview, the result, the ground truth.
A workflow that needs FLUX (or SD1.5) weights gets the thumbnail of the toy run of the same
method, labelled so (ContextDrag's is the toy Kontext run). A few minutes on a CPU (DragFlow's
optimisation is most of it).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import fluxdrag_bootstrap  # noqa: E402,F401
from fluxdrag.tools.comfy_env import find_comfyui, not_found_message  # noqa: E402
from fluxdrag.tools.comfy_server import start_server, stop_server  # noqa: E402

WF = ROOT / "workflows"
API = WF / "api"
TILE, PAD, CAPTION, BANNER = 240, 8, 18, 34
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
    draw.text((PAD, 9), banner, fill=(255, 216, 77), font=font)
    for k, (caption, im) in enumerate(tiles):
        x = PAD + (k % cols) * (TILE + PAD)
        y = BANNER + (k // cols) * (TILE + CAPTION + PAD)
        draw.text((x, y), caption, fill=(220, 220, 220), font=font)
        out.paste(im.convert("RGB").resize((TILE, TILE)), (x, y + CAPTION))
    return out


def run_toy(client, name: str) -> dict:
    """{"source"|"truth"|"preview"|"edit": PIL image} saved by one toy workflow run."""
    from PIL import Image

    api = json.loads((API / f"{name}_api.json").read_text(encoding="utf-8"))
    entry = client.run(api, timeout=1800)
    return {p.name.split("_")[-3]: Image.open(p).copy() for p in client.output_files(entry)}


def main(only: list[str] | None = None) -> int:
    comfyui = find_comfyui()
    if comfyui is None:
        print(not_found_message(), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        client = start_server(comfyui, Path(tmp), timeout=300)
        try:
            runs = {}
            todo = {k: v for k, v in THUMBS.items() if not only or k in only}
            for toy in sorted({t for t, _ in todo.values()}):
                print("running", toy, flush=True)
                runs[toy] = run_toy(client, toy)
            for name, (toy, banner) in todo.items():
                saved = runs[toy]
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
