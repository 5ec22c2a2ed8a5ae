"""Toy-world nodes: the bundled toy FLUX model, seeded scenes with ground truth, latent previews.

The toy model (``toyworld/toyflux.safetensors``) is a small FLUX-architecture model trained
on synthetic scenes; it lets every node of the pack run anywhere (CPU, no downloads) and gives
edits a measurable ground truth. Scenes and model are runtime code in ``toyworld/``; the benchmark is ``bench/toybench/``.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..toyworld import scenes
from ..toyworld.model import TOY_MODELS
from .common import CATEGORY, DragInstructions, FluxDragInputError

FAMILY_OPTIONS = ["any", *scenes.FAMILIES]
CASE_OPTIONS = ["random", *scenes.CASES]
TOY_MODEL_NAMES = list(TOY_MODELS)


class ToyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragToyModelLoader",
            display_name="FluxDrag Toy Model Loader",
            category=f"{CATEGORY}/toy world",
            description="Loads a bundled toy FLUX-architecture model (trained on synthetic "
                        "scenes) as a normal MODEL, with its fixed text conditioning: the toy FLUX, "
                        "or the toy Kontext (the toy FLUX fine-tuned to read a ReferenceLatent).",
            inputs=[
                io.Combo.Input("family", options=FAMILY_OPTIONS, default="any",
                               tooltip="Scene family the conditioning asks for ('any' = the "
                                       "family-agnostic condition)."),
                io.Float.Input("guidance", default=3.5, min=0.0, max=30.0, step=0.1,
                               tooltip="FLUX distilled guidance stored in the conditioning."),
                io.Combo.Input("weight_dtype", options=["default", "fp8_e4m3fn", "fp8_e5m2"],
                               default="default", optional=True,
                               tooltip="Weight storage, as UNETLoader's weight_dtype: fp8 stores "
                                       "the weights in 8 bits and computes in float32."),
                io.Combo.Input("model_name", options=list(TOY_MODEL_NAMES), default="toy FLUX", optional=True,
                               tooltip="Which toy model: 'toy FLUX' (text-to-image) or 'toy Kontext' (reads "
                                       "a reference image through ComfyUI's ReferenceLatent node, like "
                                       "FLUX.1 Kontext; for ContextDrag)."),
            ],
            outputs=[io.Model.Output(), io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, family="any", guidance=3.5, weight_dtype="default", model_name="toy FLUX") -> io.NodeOutput:
        from ..toyworld.model import TOY_MODELS, load_toy_model

        if model_name not in TOY_MODELS:
            raise ValueError(f"FluxDrag Toy Model Loader: input 'model_name' is {model_name!r}; "
                             f"choose one of {', '.join(TOY_MODELS)}")
        model, cond = load_toy_model(TOY_MODELS[model_name], family=None if family == "any" else family,
                                     guidance=guidance, weight_dtype=weight_dtype)
        return io.NodeOutput(model, cond)


class ToyScene(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragToyScene",
            display_name="FluxDrag Toy Scene",
            category=f"{CATEGORY}/toy world",
            description="A seeded synthetic scene for the toy model: the source LATENT, its drag "
                        "instructions, the ground-truth edited LATENT and the source as an IMAGE.",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2 ** 31 - 1,
                             tooltip="Scene seed (every seed is a different scene)."),
                io.Combo.Input("family", options=list(scenes.FAMILIES), default="single",
                               tooltip=" / ".join(scenes.FAMILIES) + " (textured_bg: held out of the "
                                       "toy model's training; lit / texture / occlusion / articulated: "
                                       "the v3 world, docs/toyworld_v3.md)."),
                io.Combo.Input("case", options=CASE_OPTIONS, default="move",
                               tooltip="Edit (or random). single / multi / textured_bg / crowded: move, "
                                       "rotate, stretch, multi_move; the other families: "
                                       + "; ".join(f"{f}: {', '.join(c)}" for f, c in
                                                   scenes.NEW_FAMILY_CASES.items()) + "."),
            ],
            outputs=[io.Latent.Output(display_name="source"),
                     DragInstructions.Output(display_name="drag_instructions"),
                     io.Latent.Output(display_name="ground_truth"),
                     io.Image.Output(display_name="source_image")],
        )

    @classmethod
    def execute(cls, seed=0, family="single", case="move") -> io.NodeOutput:
        from ..core.instructions import parse_instructions
        from ..toyworld.model import scene_latent_to_comfy

        try:
            sc = scenes.make_scene(int(seed), family, None if case == "random" else case)
        except ValueError as e:
            raise FluxDragInputError(f"FluxDrag Toy Scene: inputs 'family' / 'case': {e}; pick a case "
                                     f"that family has (the 'case' tooltip lists them).") from None
        img = scenes.to_rgb(sc.latent).permute(1, 2, 0)[None]
        return io.NodeOutput(scene_latent_to_comfy(sc.latent), parse_instructions(sc.drags),
                             scene_latent_to_comfy(sc.edited), img)


class ToyLatentToImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragToyLatentToImage",
            display_name="FluxDrag Toy Latent To Image",
            category=f"{CATEGORY}/toy world",
            description="Shows a toy-world LATENT as an IMAGE through the fixed 16→RGB projection "
                        "(the toy world needs no VAE).",
            inputs=[io.Latent.Input("latent", tooltip="A LATENT of the toy model.")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, latent) -> io.NodeOutput:
        from ..toyworld.model import comfy_to_scene_latent

        return io.NodeOutput(scenes.to_rgb(comfy_to_scene_latent(latent)).permute(0, 2, 3, 1))


class ToySceneRegion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragToySceneRegion",
            display_name="FluxDrag Toy Scene Region",
            category=f"{CATEGORY}/toy world",
            description="DragFlow input from a toy scene: its editable mask as one 'relocate' "
                        "region moved by the mean handle→target displacement (rotations and "
                        "stretches become what a region move can do), added to its drags.",
            inputs=[DragInstructions.Input("drag_instructions",
                                           tooltip="A toy scene's drags (they carry its mask).")],
            outputs=[DragInstructions.Output(display_name="drag_instructions")],
        )

    @classmethod
    def execute(cls, drag_instructions) -> io.NodeOutput:
        from ..core.instructions import parse_instructions
        from .common import FluxDragInputError
        from .dragflow import add_region, build_region

        name = "FluxDrag Toy Scene Region"
        ins = parse_instructions(drag_instructions)
        if ins.mask is None or not ins.drags:
            raise FluxDragInputError(f"{name}: input 'drag_instructions' needs drags and a mask "
                                     f"(connect a FluxDrag Toy Scene).")
        n = len(ins.drags)
        begin = tuple(sum(d.handle[i] for d in ins.drags) / n for i in (0, 1))
        target = tuple(sum(d.target[i] for d in ins.drags) / n for i in (0, 1))
        region = build_region(ins.mask.float()[None], "relocate", begin, target, None, node=name)
        return io.NodeOutput(add_region(ins, region, node=name))


NODES = [ToyModelLoader, ToyScene, ToyLatentToImage, ToySceneRegion]
