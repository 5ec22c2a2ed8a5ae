"""Dev tool: write the shipped workflows (API format) and their UI twins.

    python scripts/make_workflows.py            # needs ComfyUI (COMFYUI_PATH or ~/comfy/ComfyUI)

Each workflow is defined once here as an API graph; the UI file is produced by
``scripts/api_to_ui.py`` from a real server's ``/object_info`` (started with the pack loaded),
so widget order always matches the frontend. Commit both outputs.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WF = ROOT / "workflows"


def node(class_type: str, title: str, **inputs) -> dict:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def flux_loaders() -> dict:
    return {
        "1": node("UNETLoader", "Load FLUX model", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "2": node("DualCLIPLoader", "Load text encoders", clip_name1="clip_l.safetensors",
                  clip_name2="t5xxl_fp16.safetensors", type="flux", device="default"),
        "3": node("VAELoader", "Load VAE", vae_name="ae.safetensors"),
    }


SUN_DRAG = {"version": 1, "image_size": [256, 256],
            "drags": [{"handle": [204, 46], "target": [124, 46], "mode": "move", "scale": [1, 1]}],
            "mask": {"polygons": [[[174, 16], [234, 16], [234, 76], [174, 76]]]}}


def lazydrag() -> dict:
    g = flux_loaders()
    g.update({
        "4": node("LoadImage", "Source image", image="source.png"),
        "5": node("VAEEncode", "Encode source", pixels=["4", 0], vae=["3", 0]),
        "6": node("CLIPTextEncode", "Inversion prompt", text="", clip=["2", 0]),
        "7": node("FluxDragInstructionsJSON", "Drag instructions", drags_json=json.dumps(SUN_DRAG),
                  image=["4", 0]),
        "8": node("FluxDragCorrespondenceMap", "Correspondence map", drag_instructions=["7", 0],
                  latent=["5", 0], transition_width=1, activation=0.8, seed=0, image=["4", 0]),
        "9": node("FluxDragInvert", "Invert (Uni-Inv)", model=["1", 0], latent=["5", 0], positive=["6", 0],
                  steps=28, solver="uni_inv", strength=1.0, scheduler="simple", guidance=1.0,
                  edit_map=["8", 0], cache_policy="cpu", cache_budget_gb=0.0),
        "10": node("FluxDragLazyDragPatch", "LazyDrag patch", model=["1", 0], inversion=["9", 1],
                   map=["8", 0], background=True, identity=True, refine=True, mask_text=True,
                   h_max=0.8, hold=0.2, end=0.6),
        "11": node("CLIPTextEncode", "Target prompt", text="", clip=["2", 0]),
        "12": node("FluxGuidance", "Guidance", conditioning=["11", 0], guidance=2.0),
        "13": node("FluxDragSampleFromInversion", "Sample edited", model=["10", 0], inversion=["9", 1],
                   positive=["12", 0], solver="auto", cfg=1.0, latent=["10", 1], keep_cache=False),
        "14": node("VAEDecode", "Decode", samples=["13", 0], vae=["3", 0]),
        "15": node("SaveImage", "Save edited", images=["14", 0], filename_prefix="fluxdrag_lazydrag"),
        "16": node("SaveImage", "Save map preview", images=["8", 1], filename_prefix="fluxdrag_lazydrag_map"),
    })
    return g


WORKFLOWS = {"lazydrag_flux": lazydrag}


def main(names: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "scripts"))
    from api_to_ui import api_to_ui
    from comfy_server import start_server, stop_server

    sys.path.insert(0, str(ROOT))
    import fluxdrag_bootstrap  # noqa: F401
    from fluxdrag.tools.comfy_env import find_comfyui

    todo = {k: v for k, v in WORKFLOWS.items() if not names or k in names}
    for name, fn in todo.items():
        (WF / f"{name}_api.json").write_text(json.dumps(fn(), indent=2) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        client = start_server(find_comfyui(), Path(tmp))
        try:
            info = client.object_info()
            for name in todo:
                api = json.loads((WF / f"{name}_api.json").read_text())
                (WF / f"{name}.json").write_text(json.dumps(api_to_ui(api, info), indent=2) + "\n")
                print("wrote", name)
        finally:
            stop_server(client)


if __name__ == "__main__":
    main(sys.argv[1:])
