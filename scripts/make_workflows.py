"""Dev tool: write the shipped workflows (API format) and their UI twins.

    python -m scripts.make_workflows [name ...]   # needs ComfyUI (found like the demo)

UI workflows go to ``workflows/`` (ComfyUI's template browser lists that folder, one level deep);
their API twins to ``workflows/api/<name>_api.json`` (for ``POST /prompt``).

Each workflow is defined once here as an API graph; the UI file is produced by
``scripts/api_to_ui.py`` from a real server's ``/object_info`` (started with the pack loaded),
so widget order always matches the frontend. Commit both outputs.

The pack's widget values come from the methods' settings dataclasses (``fluxdrag/pipelines/*.py``, the only
place a default lives): :func:`values` reads them; a workflow names only what it changes. The FLUX
workflows show each method's options node (at its defaults, preset "custom") wired to its nodes.
"""
from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WF = ROOT / "workflows"  # UI workflows: what ComfyUI's template browser lists (one level only)
API = WF / "api"  # their API twins, for POST /prompt (scripts/queue_workflow.py)
# the example input as the pack installs it into ComfyUI's input folder (fluxdrag/nodes/editor.py)
EXAMPLE_IMAGE = "fluxdrag_example.png"


def node(class_type: str, title: str, **inputs) -> dict:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def settings_class(name: str):
    """A settings dataclass by its method name (LazyDrag, DragFlow, ContextDrag, AttentionDrag,
    Inversion, Sampling)."""
    mods = {"LazyDrag": "lazydrag", "DragFlow": "dragflow_inputs", "ContextDrag": "contextdrag",
            "AttentionDrag": "attention_drag", "Inversion": "inversion", "Sampling": "inversion"}
    mod = importlib.import_module(f"fluxdrag.pipelines.{mods[name]}")
    return getattr(mod, f"{name}Settings")


def values(method: str, node_tag: str = "", main: bool = True, **changes) -> dict:
    """The widget values of ``method``'s node ``node_tag`` (main widgets, or the options node's
    with ``main=False``) from its settings dataclass, with ``changes``."""
    from fluxdrag.pipelines.settings import specs

    out = {s.name: s.default for s in specs(settings_class(method))
           if (not node_tag or s.node == node_tag) and s.main == main}
    unknown = set(changes) - set(out)
    if unknown:
        raise KeyError(f"{method} {node_tag or ''}: no widgets {sorted(unknown)}")
    return {**out, **changes}


def options_node(method: str, title: str, node_tags: tuple = ("",), **changes) -> dict:
    """``method``'s options node with every field at its settings default, then ``changes``."""
    opts = {}
    for tag in node_tags:
        opts.update(values(method, tag, main=False))
    unknown = set(changes) - set(opts)
    if unknown:
        raise KeyError(f"{method} options: no widgets {sorted(unknown)}")
    return node(f"FluxDrag{method}Options", title, preset="custom", **{**opts, **changes})


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
        "4": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "5": node("VAEEncode", "Encode source", pixels=["4", 0], vae=["3", 0]),
        "6": node("CLIPTextEncode", "Inversion prompt", text="", clip=["2", 0]),
        "7": node("FluxDragDragEditor", "Drag Editor", image=["4", 0], drags=json.dumps(SUN_DRAG)),
        "8": node("FluxDragCorrespondenceMap", "Correspondence map", drag_instructions=["7", 0],
                  latent=["5", 0], image=["4", 0], options=["17", 0], **values("LazyDrag", "map")),
        "9": node("FluxDragInvert", "Invert (Uni-Inv)", model=["1", 0], latent=["5", 0], positive=["6", 0],
                  edit_map=["8", 0], **values("Inversion", solver="uni_inv")),
        "10": node("FluxDragLazyDragPatch", "LazyDrag patch", model=["1", 0], inversion=["9", 1],
                   map=["8", 0], options=["17", 0], **values("LazyDrag", "patch")),
        "11": node("CLIPTextEncode", "Target prompt", text="", clip=["2", 0]),
        "12": node("FluxGuidance", "Guidance", conditioning=["11", 0], guidance=2.0),
        "13": node("FluxDragSampleFromInversion", "Sample edited", model=["10", 0], inversion=["9", 1],
                   positive=["12", 0], latent=["10", 1], **values("Sampling")),
        "14": node("VAEDecode", "Decode", samples=["13", 0], vae=["3", 0]),
        "15": node("SaveImage", "Save edited", images=["14", 0], filename_prefix="fluxdrag_lazydrag"),
        "16": node("SaveImage", "Save map preview", images=["8", 1], filename_prefix="fluxdrag_lazydrag_map"),
        "17": options_node("LazyDrag", "LazyDrag options", ("map", "patch")),
    })
    return g


def contextdrag() -> dict:
    g = flux_loaders()
    g["1"]["inputs"]["unet_name"] = "flux1-kontext-dev.safetensors"
    g["1"]["_meta"]["title"] = "Load FLUX Kontext model"
    g.update({
        "4": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "5": node("FluxKontextImageScale", "Kontext scale", image=["4", 0]),
        "6": node("VAEEncode", "Encode reference", pixels=["5", 0], vae=["3", 0]),
        "7": node("CLIPTextEncode", "Prompt", text="Keep the image unchanged.", clip=["2", 0]),
        "8": node("ReferenceLatent", "Reference latent", conditioning=["7", 0], latent=["6", 0]),
        "9": node("FluxGuidance", "Guidance", conditioning=["8", 0], guidance=2.5),
        "10": node("ConditioningZeroOut", "Negative (unused at cfg 1)", conditioning=["9", 0]),
        "11": node("FluxDragInstructionsJSON", "Drag instructions", drags_json=json.dumps(SUN_DRAG),
                   image=["4", 0]),
        "12": node("FluxDragReverseMapping", "Reverse mapping", drag_instructions=["11", 0], latent=["6", 0],
                   image=["5", 0], **values("ContextDrag", "map")),
        "13": node("FluxDragContextTokenInjection", "Context token injection", model=["1", 0], map=["12", 0],
                   options=["21", 0], **values("ContextDrag", "cti")),
        "14": node("FluxDragPositionConsistentAttention", "Position-consistent attention", model=["13", 0],
                   map=["12", 0], options=["21", 0], **values("ContextDrag", "pca")),
        "15": node("GetImageSize", "Reference size", image=["5", 0]),
        "16": node("EmptySD3LatentImage", "Empty latent (reference size)", width=["15", 0], height=["15", 1],
                   batch_size=1),
        "17": node("KSampler", "Sample", model=["14", 0], seed=0, steps=28, cfg=1.0, sampler_name="euler",
                   scheduler="simple", positive=["9", 0], negative=["10", 0], latent_image=["16", 0],
                   denoise=1.0),
        "18": node("VAEDecode", "Decode", samples=["17", 0], vae=["3", 0]),
        "19": node("SaveImage", "Save edited", images=["18", 0], filename_prefix="fluxdrag_contextdrag"),
        "20": node("SaveImage", "Save map preview", images=["12", 1], filename_prefix="fluxdrag_contextdrag_map"),
        "21": options_node("ContextDrag", "ContextDrag options (blocks, steps)", ("patch",)),
    })
    return g


WORKFLOWS = {"lazydrag_flux": lazydrag, "contextdrag_kontext": contextdrag}


def _attentiondrag_node(model, latent, drags, positive, image, steps: int, options=None) -> dict:
    extra = {} if options is None else {"options": options}
    return node("FluxDragAttentionDrag", "AttentionDrag", model=model, latent=latent, drag_instructions=drags,
                positive=positive, image=image, **extra, **values("AttentionDrag", steps=steps))


def attentiondrag_sd15() -> dict:
    return {
        "1": node("CheckpointLoaderSimple", "Load SD1.5 checkpoint", ckpt_name="v1-5-pruned-emaonly.safetensors"),
        "2": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "3": node("VAEEncode", "Encode source", pixels=["2", 0], vae=["1", 2]),
        "4": node("CLIPTextEncode", "Prompt", text="a red house, a tree and a yellow sun", clip=["1", 1]),
        "5": node("FluxDragInstructionsJSON", "Drag instructions", drags_json=json.dumps(SUN_DRAG),
                  image=["2", 0]),
        "6": _attentiondrag_node(["1", 0], ["3", 0], ["5", 0], ["4", 0], ["2", 0], steps=50, options=["10", 0]),
        "7": node("VAEDecode", "Decode", samples=["6", 0], vae=["1", 2]),
        "8": node("SaveImage", "Save edited", images=["7", 0], filename_prefix="fluxdrag_attentiondrag_sd15"),
        "9": node("SaveImage", "Save attention preview", images=["6", 1],
                  filename_prefix="fluxdrag_attentiondrag_sd15_map"),
        "10": options_node("AttentionDrag", "AttentionDrag options"),
    }


def attentiondrag_flux() -> dict:
    g = flux_loaders()
    g.update({
        "4": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "5": node("VAEEncode", "Encode source", pixels=["4", 0], vae=["3", 0]),
        "6": node("CLIPTextEncode", "Prompt", text="a red house, a tree and a yellow sun", clip=["2", 0]),
        "7": node("FluxGuidance", "Guidance (as inversion_guidance: keeps the rest)", conditioning=["6", 0],
                  guidance=1.0),
        "8": node("FluxDragInstructionsJSON", "Drag instructions", drags_json=json.dumps(SUN_DRAG),
                  image=["4", 0]),
        "9": _attentiondrag_node(["1", 0], ["5", 0], ["8", 0], ["7", 0], ["4", 0], steps=28, options=["13", 0]),
        "10": node("VAEDecode", "Decode", samples=["9", 0], vae=["3", 0]),
        "11": node("SaveImage", "Save edited", images=["10", 0], filename_prefix="fluxdrag_attentiondrag_flux"),
        "12": node("SaveImage", "Save attention preview", images=["9", 1],
                   filename_prefix="fluxdrag_attentiondrag_flux_map"),
        "13": options_node("AttentionDrag", "AttentionDrag options"),
    })
    return g


WORKFLOWS.update({"attentiondrag_sd15": attentiondrag_sd15, "attentiondrag_flux": attentiondrag_flux})


SUN_PROMPT = "a red house, a green tree and a yellow sun in a blue sky"


def _dragflow_graph(adapter: bool) -> dict:
    """Move the sun: a region mask built from core mask nodes, one DragFlow edit."""
    g = flux_loaders()
    g.update({
        "4": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "5": node("VAEEncode", "Encode source", pixels=["4", 0], vae=["3", 0]),
        "6": node("CLIPTextEncode", "Source prompt", text=SUN_PROMPT, clip=["2", 0]),
        "7": node("CLIPTextEncode", "Target prompt", text=SUN_PROMPT, clip=["2", 0]),
        "8": node("SolidMask", "Empty mask", value=0.0, width=256, height=256),
        "9": node("SolidMask", "Sun box", value=1.0, width=56, height=56),
        "10": node("MaskComposite", "Sun mask", destination=["8", 0], source=["9", 0], x=176, y=18,
                   operation="add"),
        "11": node("FluxDragRegionInstruction", "Move the sun", mask=["10", 0], op="relocate",
                   begin_x=204.0, begin_y=46.0, target_x=96.0, target_y=40.0, anchor_x=-1.0,
                   anchor_y=-1.0, image=["4", 0]),
        "12": node("FluxDragRegionAffineOptimise", "DragFlow", model=["1", 0], latent=["5", 0],
                   source=["6", 0], target=["7", 0], drag_instructions=["11", 0], image=["4", 0],
                   options=["20", 0], **values("DragFlow")),
        "13": node("VAEDecode", "Decode", samples=["12", 0], vae=["3", 0]),
        "14": node("SaveImage", "Save edited", images=["13", 0], filename_prefix="fluxdrag_dragflow"),
        "15": node("SaveImage", "Save region preview", images=["12", 1],
                   filename_prefix="fluxdrag_dragflow_regions"),
        "20": options_node("DragFlow", "DragFlow options"),
    })
    if adapter:
        g.update({
            "16": node("CLIPVisionLoader", "Load SigLIP", clip_name="sigclip_vision_patch14_384.safetensors"),
            "17": node("CLIPVisionEncode", "Encode source (vision)", clip_vision=["16", 0],
                       image=["4", 0], crop="center"),
            "18": node("StyleModelLoader", "Load Redux", style_model_name="flux1-redux-dev.safetensors"),
            "19": node("StyleModelApply", "Redux adapter", conditioning=["6", 0], style_model=["18", 0],
                       clip_vision_output=["17", 0], strength=1.0, strength_type="multiply"),
        })
        g["12"]["inputs"]["adapter"] = ["19", 0]
        g["14"]["inputs"]["filename_prefix"] = "fluxdrag_dragflow_redux"
    return g


def dragflow() -> dict:
    return _dragflow_graph(adapter=False)


def dragflow_redux() -> dict:
    return _dragflow_graph(adapter=True)


WORKFLOWS.update({"dragflow_flux": dragflow, "dragflow_redux_flux": dragflow_redux})


# -- toy world: every method on the bundled toy FLUX model (CPU, no download) -------------------
# One fixed scene (seed, family, case) per workflow; each saves the scene's source, the result,
# the ground truth and the method's preview. Node inputs not named here keep their defaults, except
# that inversion runs at the toy model's own guidance (the loader's 3.5: the nodes' default 1.0 is
# FLUX-dev's with an empty prompt and makes the toy model's reconstruction drift).
TOY_SEED = 3
TOY_GUIDANCE = 3.5


def _toy_base(prefix: str) -> dict:
    return {
        "1": node("FluxDragToyModelLoader", "Toy model (bundled, no download)"),
        "2": node("FluxDragToyScene", "Toy scene (fixed seed)", seed=TOY_SEED, family="single",
                  case="move"),
        "3": node("FluxDragToyLatentToImage", "Ground truth image", latent=["2", 2]),
        "4": node("SaveImage", "Save source", images=["2", 3],
                  filename_prefix=f"FluxDrag/{prefix}_source"),
        "5": node("SaveImage", "Save ground truth", images=["3", 0],
                  filename_prefix=f"FluxDrag/{prefix}_truth"),
    }


def _toy_result(g: dict, latent: list, prefix: str, title: str = "Save edit") -> dict:
    g["20"] = node("FluxDragToyLatentToImage", "Result image", latent=latent)
    g["21"] = node("SaveImage", title, images=["20", 0], filename_prefix=f"FluxDrag/{prefix}_edit")
    return g


def toy_invert_reconstruct() -> dict:
    """Invert the scene and sample it back (no edit: the result should be the source; the
    scene's ground truth shows the edit the other toy workflows aim at)."""
    g = _toy_base("toy_invert")
    g.update({
        "10": node("FluxDragInvert", "Invert", model=["1", 0], latent=["2", 0], positive=["1", 1],
                   guidance=TOY_GUIDANCE),
        "11": node("FluxDragSampleFromInversion", "Reconstruct", model=["1", 0], inversion=["10", 1],
                   positive=["1", 1]),
    })
    return _toy_result(g, ["11", 0], "toy_invert", "Save reconstruction")


def toy_lazydrag() -> dict:
    g = _toy_base("toy_lazydrag")
    g.update({
        "10": node("FluxDragCorrespondenceMap", "Correspondence map", drag_instructions=["2", 1],
                   latent=["2", 0], seed=TOY_SEED, image=["2", 3]),
        "11": node("FluxDragInvert", "Invert (Uni-Inv, caches for the map)", model=["1", 0],
                   latent=["2", 0], positive=["1", 1], solver="uni_inv", guidance=TOY_GUIDANCE,
                   edit_map=["10", 0]),
        "12": node("FluxDragLazyDragPatch", "LazyDrag patch", model=["1", 0], inversion=["11", 1],
                   map=["10", 0]),
        "13": node("FluxDragSampleFromInversion", "Sample edited", model=["12", 0],
                   inversion=["11", 1], positive=["1", 1], latent=["12", 1]),
        "14": node("SaveImage", "Save map preview", images=["10", 1],
                   filename_prefix="FluxDrag/toy_lazydrag_preview"),
    })
    return _toy_result(g, ["13", 0], "toy_lazydrag")


def toy_dragflow() -> dict:
    g = _toy_base("toy_dragflow")
    g.update({
        "10": node("FluxDragToySceneRegion", "Scene mask as a region", drag_instructions=["2", 1]),
        "11": node("FluxDragRegionAffineOptimise", "DragFlow", model=["1", 0], latent=["2", 0],
                   source=["1", 1], target=["1", 1], drag_instructions=["10", 0], image=["2", 3],
                   options=["12", 0]),
        "12": options_node("DragFlow", "DragFlow options"),
        "14": node("SaveImage", "Save region preview", images=["11", 1],
                   filename_prefix="FluxDrag/toy_dragflow_preview"),
    })
    return _toy_result(g, ["11", 0], "toy_dragflow")


def toy_attentiondrag() -> dict:
    g = _toy_base("toy_attentiondrag")
    g.update({
        "11": node("FluxDragAttentionDrag", "AttentionDrag", model=["1", 0], latent=["2", 0],
                   drag_instructions=["2", 1], positive=["1", 1], image=["2", 3], options=["12", 0]),
        "12": options_node("AttentionDrag", "AttentionDrag options", inversion_guidance=TOY_GUIDANCE),
        "14": node("SaveImage", "Save attention preview", images=["11", 1],
                   filename_prefix="FluxDrag/toy_attentiondrag_preview"),
    })
    return _toy_result(g, ["11", 0], "toy_attentiondrag")


def toy_contextdrag() -> dict:
    """The Kontext graph on the toy Kontext: the scene's source is the ReferenceLatent, the
    sampler starts from an empty latent of its size (256×256 px)."""
    g = _toy_base("toy_contextdrag")
    g["1"]["inputs"]["model_name"] = "toy Kontext"
    g["1"]["_meta"]["title"] = "Toy Kontext (bundled, no download)"
    g.update({
        "10": node("ReferenceLatent", "Reference latent", conditioning=["1", 1], latent=["2", 0]),
        "11": node("FluxDragReverseMapping", "Reverse mapping", drag_instructions=["2", 1], latent=["2", 0],
                   image=["2", 3]),
        "12": node("FluxDragContextTokenInjection", "Context token injection", model=["1", 0], map=["11", 0]),
        "13": node("FluxDragPositionConsistentAttention", "Position-consistent attention", model=["12", 0],
                   map=["11", 0]),
        "15": node("EmptySD3LatentImage", "Empty latent (reference size)", width=256, height=256, batch_size=1),
        "16": node("KSampler", "Sample", model=["13", 0], seed=TOY_SEED, steps=20, cfg=1.0, sampler_name="euler",
                   scheduler="simple", positive=["10", 0], negative=["10", 0], latent_image=["15", 0],
                   denoise=1.0),
        "14": node("SaveImage", "Save map preview", images=["11", 1],
                   filename_prefix="FluxDrag/toy_contextdrag_preview"),
    })
    return _toy_result(g, ["16", 0], "toy_contextdrag")


TOY_WORKFLOWS = {"toy_invert_reconstruct": toy_invert_reconstruct, "toy_lazydrag": toy_lazydrag,
                 "toy_dragflow": toy_dragflow, "toy_attentiondrag": toy_attentiondrag,
                 "toy_contextdrag": toy_contextdrag}


def invert_reconstruct() -> dict:
    g = flux_loaders()
    g.update({
        "4": node("LoadImage", "Source image", image=EXAMPLE_IMAGE),
        "5": node("VAEEncode", "Encode source", pixels=["4", 0], vae=["3", 0]),
        "6": node("CLIPTextEncode", "Inversion prompt", text="", clip=["2", 0]),
        "7": node("FluxDragInvert", "Invert", model=["1", 0], latent=["5", 0], positive=["6", 0],
                  **values("Inversion", steps=16, scheduler="beta")),  # the toy world's inversion table
        "8": node("CLIPTextEncode", "Target prompt", text="", clip=["2", 0]),
        "9": node("FluxGuidance", "Target guidance", conditioning=["8", 0], guidance=1.0),
        "10": node("FluxDragSampleFromInversion", "Reconstruct", model=["1", 0], inversion=["7", 1],
                   positive=["9", 0], **values("Sampling")),
        "11": node("VAEDecode", "Decode", samples=["10", 0], vae=["3", 0]),
        "12": node("SaveImage", "Save reconstruction", images=["11", 0],
                   filename_prefix="FluxDrag/invert_reconstruct"),
    })
    return g


# the order of the README's table: the no-download toy workflows first
WORKFLOWS = {**TOY_WORKFLOWS, "invert_reconstruct": invert_reconstruct, **WORKFLOWS}


def check_inputs(name: str, api: dict, info: dict) -> None:
    """Every input a workflow sets is one its node declares (an undeclared one would be dropped
    by the UI twin and by ComfyUI)."""
    for nid, n in api.items():
        node_info = info[n["class_type"]]["input"]
        known = {**node_info.get("required", {}), **node_info.get("optional", {})}
        extra = set(n["inputs"]) - set(known)
        if extra:
            raise SystemExit(f"{name}: node {nid} ({n['class_type']}) has no inputs {sorted(extra)}")


def main(names: list[str]) -> None:
    from scripts.api_to_ui import api_to_ui
    from tools.comfy_env import find_comfyui
    from tools.comfy_server import start_server, stop_server
    from tools.object_info import with_defaults

    todo = {k: v for k, v in WORKFLOWS.items() if not names or k in names}
    API.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        client = start_server(find_comfyui(), Path(tmp), timeout=300)
        try:
            info = client.object_info()
            for name, fn in todo.items():
                api = fn()
                check_inputs(name, api, info)
                api = with_defaults(api, info)
                (API / f"{name}_api.json").write_text(json.dumps(api, indent=2) + "\n")
                (WF / f"{name}.json").write_text(json.dumps(api_to_ui(api, info), indent=2) + "\n")
                print("wrote", name)
        finally:
            stop_server(client)


if __name__ == "__main__":
    main(sys.argv[1:])
