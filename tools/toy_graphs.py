"""API-format graphs of toy-model edits (no weights to download), for tests and benchmarks that
queue work on a real server: one function per method, each ending in ``SaveLatent`` so the
result can be compared bit for bit.

Node ids are fixed: "1" Toy Model Loader, "2" Toy Scene (outputs: source LATENT, DRAG_INSTRUCTIONS,
ground-truth LATENT, source IMAGE); each graph's docstring names the rest. The graphs name only
what they set; ``with_defaults`` fills every other required input from the server's
``/object_info`` (what the frontend does for a new node), so they follow the nodes' defaults.
"""
from __future__ import annotations

import json

from .object_info import with_defaults  # noqa: F401  (re-exported: graphs here name few inputs)


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def _base(seed: int, family: str = "single", case: str = "move") -> dict:
    return {"1": node("FluxDragToyModelLoader", family="any", guidance=3.5),
            "2": node("FluxDragToyScene", seed=seed, family=family, case=case)}


def lazydrag(seed: int, steps: int = 4, prefix: str = "toy_lazydrag", family: str = "single",
             case: str = "move") -> dict:
    """3 Correspondence Map → 4 Invert (Uni-Inv, caching for the map) → 5 LazyDrag Patch →
    6 Sample From Inversion → 7 SaveLatent."""
    g = _base(seed, family, case)
    g.update({
        "3": node("FluxDragCorrespondenceMap", drag_instructions=["2", 1], latent=["2", 0],
                  transition_width=1, activation=0.8, seed=0),
        "4": node("FluxDragInvert", model=["1", 0], latent=["2", 0], positive=["1", 1], steps=steps,
                  solver="uni_inv", strength=1.0, scheduler="simple", guidance=3.5, edit_map=["3", 0],
                  cache_policy="cpu", cache_budget_gb=0.0),
        "5": node("FluxDragLazyDragPatch", model=["1", 0], inversion=["4", 1], map=["3", 0]),
        "6": node("FluxDragSampleFromInversion", model=["5", 0], inversion=["4", 1], positive=["1", 1],
                  solver="auto", cfg=1.0, latent=["5", 1]),
        "7": node("SaveLatent", samples=["6", 0], filename_prefix=prefix),
    })
    return g


def region_doc(seed: int, family: str = "single", case: str = "move") -> str:
    """The scene's drag JSON plus one DragFlow ``relocate`` region: its editable mask moved from
    the first drag's handle to its target."""
    from fluxdrag.core.instructions import parse_instructions, rle_encode
    from fluxdrag.toyworld.scenes import make_scene

    scene = make_scene(seed, family, case)
    ins = parse_instructions(scene.drags)
    d = ins.drags[0]
    return json.dumps(dict(scene.drags, regions=[{"op": "relocate", "mask": {"rle": rle_encode(ins.mask)},
                                                  "begin": list(d.handle), "target": list(d.target)}]))


def dragflow(seed: int, steps: int = 6, iterations: tuple[int, int] = (2, 1), prefix: str = "toy_dragflow",
             family: str = "single", case: str = "move") -> dict:
    """3 Drag Instructions (JSON, with the region) → 4 Region Affine Optimise (6 DragFlow Options:
    the iterations) → 5 SaveLatent."""
    g = _base(seed, family, case)
    g.update({
        "3": node("FluxDragInstructionsJSON", drags_json=region_doc(seed, family, case)),
        "4": node("FluxDragRegionAffineOptimise", model=["1", 0], latent=["2", 0], source=["1", 1],
                  target=["1", 1], drag_instructions=["3", 0], steps=steps, skip_steps=max(1, steps // 4),
                  options=["6", 0]),
        "5": node("SaveLatent", samples=["4", 0], filename_prefix=prefix),
        "6": node("FluxDragDragFlowOptions", n_transport=iterations[0], n_intensify=iterations[1]),
    })
    return g


def attentiondrag(seed: int, steps: int = 6, prefix: str = "toy_attentiondrag", family: str = "single",
                  case: str = "move") -> dict:
    """3 AttentionDrag (FLUX path) → 4 SaveLatent."""
    g = _base(seed, family, case)
    g.update({
        "3": node("FluxDragAttentionDrag", model=["1", 0], latent=["2", 0], drag_instructions=["2", 1],
                  positive=["1", 1], steps=steps),
        "4": node("SaveLatent", samples=["3", 0], filename_prefix=prefix),
    })
    return g


def invert_reconstruct(seed: int, steps: int = 8, prefix: str = "toy_reconstruct", family: str = "single",
                       case: str = "move") -> dict:
    """3 Invert (FireFlow) → 4 Sample From Inversion → 5 SaveLatent."""
    g = _base(seed, family, case)
    g.update({
        "3": node("FluxDragInvert", model=["1", 0], latent=["2", 0], positive=["1", 1], steps=steps,
                  solver="fireflow"),
        "4": node("FluxDragSampleFromInversion", model=["1", 0], inversion=["3", 1], positive=["1", 1]),
        "5": node("SaveLatent", samples=["4", 0], filename_prefix=prefix),
    })
    return g


def contextdrag(seed: int, steps: int = 4, prefix: str = "toy_contextdrag", family: str = "single",
                case: str = "move") -> dict:
    """The Kontext graph on the toy Kontext ("1" loads it): 3 ReferenceLatent (the source) →
    4 Reverse Mapping → 5 Context Token Injection → 6 Position-Consistent Attention → 7 KSampler
    (empty latent of the source's size, euler/simple, cfg 1) → 8 SaveLatent."""
    g = _base(seed, family, case)
    g["1"]["inputs"]["model_name"] = "toy Kontext"
    g.update({
        "3": node("ReferenceLatent", conditioning=["1", 1], latent=["2", 0]),
        "4": node("FluxDragReverseMapping", drag_instructions=["2", 1], latent=["2", 0]),
        "5": node("FluxDragContextTokenInjection", model=["1", 0], map=["4", 0]),
        "6": node("FluxDragPositionConsistentAttention", model=["5", 0], map=["4", 0]),
        "9": node("EmptySD3LatentImage", width=256, height=256, batch_size=1),
        "7": node("KSampler", model=["6", 0], positive=["3", 0], negative=["3", 0], latent_image=["9", 0],
                  steps=steps, cfg=1.0, sampler_name="euler", scheduler="simple", denoise=1.0, seed=seed),
        "8": node("SaveLatent", samples=["7", 0], filename_prefix=prefix),
    })
    return g


GRAPHS = {"lazydrag": lazydrag, "dragflow": dragflow, "attentiondrag": attentiondrag,
          "invert_reconstruct": invert_reconstruct, "contextdrag": contextdrag}
