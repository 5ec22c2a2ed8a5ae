"""Shared bits of the node layer: the pack's custom types and category; the checks and
conversions the nodes share with the pipelines live in ``pipelines/common.py``."""
from __future__ import annotations

import functools
import warnings
from dataclasses import replace

from comfy_api.latest import io

from ..pipelines.common import (  # noqa: F401  (re-exported for the node modules)
    START_KEY,
    FluxDragInputError,
    StepProgress,
    check_batch,
    check_latent,
    image_at,
    mask_at,
    require_flux,
    sampling_sigmas,
    to_latent,
    to_model_space,
    user_warnings,
)
from ..pipelines.settings import (  # noqa: F401  (re-exported for the node modules)
    MethodOptions,
    Spec,
    check_choice,
    paper_settings,
    specs,
    validate,
    with_options,
)

Inversion = io.Custom("FLUXDRAG_INVERSION")
DragInstructions = io.Custom("DRAG_INSTRUCTIONS")
EditMap = io.Custom("FLUXDRAG_MAP")

CATEGORY = "FluxDrag"


def shows_warnings(node_cls: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """Class decorator: what a node's ``execute`` reports with ``warnings.warn`` (a rescaled
    drawing, a resized mask, mixed solvers, ...) reaches the user — the node's text in the UI,
    a progress-text event over the API, the log at WARNING — not only the server's stderr.
    Nodes that declare ``io.Hidden.unique_id`` get the text on the node itself."""
    inner = node_cls.execute.__func__
    if getattr(inner, "_fluxdrag_shows_warnings", False):
        return node_cls
    name = node_cls.define_schema().display_name

    @functools.wraps(inner)
    def execute(cls, *args, **kwargs):
        uid = getattr(getattr(cls, "hidden", None), "unique_id", None)
        with user_warnings(uid, name):
            return inner(cls, *args, **kwargs)

    execute._fluxdrag_shows_warnings = True
    node_cls.execute = classmethod(execute)
    return node_cls


# --------------------------------------------------------------------------------------------
# inputs, options nodes and old workflows, generated from a settings dataclass
# (``pipelines/settings.py``): the dataclass is the only place a default lives
# --------------------------------------------------------------------------------------------
def tooltip_of(spec: Spec) -> str:
    """The field's tooltip, with the paper's value when it differs from ours."""
    if spec.departs:
        return f"{spec.tooltip} Paper: {spec.paper!r}." if spec.kind in ("str", "combo") else \
            f"{spec.tooltip} Paper: {spec.paper}."
    return spec.tooltip


def widget_input(spec: Spec, optional: bool = False):
    """The V3 input of one settings field."""
    common = dict(default=spec.default, tooltip=tooltip_of(spec), optional=optional)
    if spec.kind == "combo":
        return io.Combo.Input(spec.name, options=list(spec.options), **common)
    if spec.kind == "bool":
        return io.Boolean.Input(spec.name, **common)
    if spec.kind == "int":
        extra = {"control_after_generate": True} if spec.seed else {}
        return io.Int.Input(spec.name, min=int(spec.min if spec.min is not None else -2 ** 63),
                            max=int(spec.max if spec.max is not None else 2 ** 63 - 1), **extra, **common)
    if spec.kind == "float":
        return io.Float.Input(spec.name, min=spec.min, max=spec.max, step=spec.step or 0.01, **common)
    return io.String.Input(spec.name, multiline=spec.multiline, **common)


def widget_inputs(settings_cls, nodes: tuple = ("",), main: bool | None = True,
                  optional: bool = False) -> list:
    """The V3 inputs of ``settings_cls``' fields read by ``nodes`` (main widgets by default)."""
    return [widget_input(s, optional) for s in specs(settings_cls)
            if (nodes == ("",) or s.node in nodes) and (main is None or s.main == main)]


def option_names(settings_cls, nodes: tuple = ("",)) -> tuple[str, ...]:
    return tuple(s.name for s in specs(settings_cls)
                 if not s.main and (nodes == ("",) or s.node in nodes))


def options_socket(settings_cls):
    """The typed socket an options node feeds (one type per method)."""
    return io.Custom(f"FLUXDRAG_{settings_cls.METHOD.upper()}_OPTIONS")


def options_input(settings_cls):
    """The main node's optional ``options`` socket."""
    return options_socket(settings_cls).Input(
        "options", optional=True,
        tooltip=f"Expert settings from FluxDrag {settings_cls.METHOD} Options (and the paper preset); "
                f"unconnected, the defaults hold.")


PRESETS = ("custom", "paper")


def make_options_node(settings_cls, node_id: str, nodes: tuple = ("",), description: str = ""):
    """The method's options node: one widget per expert field plus ``preset``; outputs
    :class:`MethodOptions` on the method's typed socket."""
    names = option_names(settings_cls, nodes)
    method = settings_cls.METHOD
    socket = options_socket(settings_cls)

    class OptionsNode(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id=node_id,
                display_name=f"FluxDrag {method} Options",
                category=f"{CATEGORY}/{method}",
                description=description or f"{method}'s expert settings and the departures from the "
                                           f"paper, for the {method} node(s)' 'options' input.",
                inputs=[io.Combo.Input("preset", options=list(PRESETS), default="custom",
                                       tooltip="custom: the values below; paper: every setting here at "
                                               "the paper's value (the widgets below are then ignored; "
                                               "each tooltip names the paper's value).")]
                + [widget_input(s, optional=True) for s in specs(settings_cls) if s.name in names],
                outputs=[socket.Output(display_name="options")],
            )

        @classmethod
        def execute(cls, preset="custom", **values) -> io.NodeOutput:
            check_choice(f"FluxDrag {method} Options", "preset", preset, PRESETS)
            if preset == "paper":
                values = {n: getattr(paper_settings(settings_cls), n) for n in names}
            s = replace(settings_cls(), **{k: v for k, v in values.items() if k in names})
            validate(s, f"FluxDrag {method} Options", names)
            return io.NodeOutput(MethodOptions(method, {n: getattr(s, n) for n in names}))

    OptionsNode.__name__ = OptionsNode.__qualname__ = f"{method}Options"
    return OptionsNode


def legacy_options(cls, settings_cls, nodes: tuple, options, node_name: str):
    """Old workflows (before the options nodes) set the expert fields on the main node itself.
    ComfyUI drops inputs a node no longer declares, so read them from the queued prompt
    (``io.Hidden.prompt``) and keep them working: they become the options when none is
    connected (and are ignored, with a notice, when one is)."""
    hidden = getattr(cls, "hidden", None)
    prompt, uid = getattr(hidden, "prompt", None), getattr(hidden, "unique_id", None)
    if not prompt or uid is None:
        return options
    inputs = (prompt.get(str(uid)) or {}).get("inputs", {})
    names = option_names(settings_cls, nodes)
    old = {k: v for k, v in inputs.items() if k in names and not isinstance(v, list)}
    if not old:
        return options
    where = f"FluxDrag {settings_cls.METHOD} Options"
    if options is not None:
        warnings.warn(f"{node_name}: inputs {', '.join(sorted(old))} of an older workflow are now on "
                      f"{where}; the connected options node's values are used instead", stacklevel=2)
        return options
    warnings.warn(f"{node_name}: inputs {', '.join(sorted(old))} (an older workflow) are now on {where}; "
                  f"their values here are used. Add that node to change them.", stacklevel=2)
    base = replace(settings_cls(), **old)
    validate(base, node_name, tuple(old))
    return MethodOptions(settings_cls.METHOD, {n: getattr(base, n) for n in names})
