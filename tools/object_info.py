"""Reading ComfyUI's ``/object_info``: which inputs are widgets, in which order the frontend
makes them, their defaults, and a graph completed with them (what the frontend does for a new
node). Used by ``scripts/api_to_ui.py``, ``scripts/make_workflows.py``, ``tools/toy_graphs.py``
and the tests. Stdlib only.
"""
from __future__ import annotations

import json

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def spec_of(node_info: dict, name: str) -> tuple[list, bool]:
    inp = node_info.get("input", {})
    if name in inp.get("required", {}):
        return inp["required"][name], False
    return inp.get("optional", {})[name], True


def is_widget(spec: list) -> bool:
    """Whether the frontend makes a widget (not only a socket) for an input spec."""
    typ, opts = spec[0], opts_of(spec)
    if opts.get("forceInput"):
        return False
    return isinstance(typ, list) or typ in WIDGET_TYPES


def opts_of(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def ordered_inputs(node_info: dict) -> list[str]:
    """Input names in the frontend's order: input_order required, optional, then the rest."""
    inp = node_info.get("input", {})
    order = node_info.get("input_order", {})
    names = list(order.get("required", inp.get("required", {}).keys()))
    names += [n for n in order.get("optional", inp.get("optional", {}).keys()) if n not in names]
    names += [n for sect in ("required", "optional") for n in inp.get(sect, {}) if n not in names]
    return names


def default_value(spec: list):
    typ, opts = spec[0], opts_of(spec)
    if "default" in opts:
        return opts["default"]
    if isinstance(typ, list):
        return typ[0] if typ else ""
    if typ == "COMBO":
        return (opts.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def with_defaults(api: dict, object_info: dict) -> dict:
    """Every widget input the graph leaves out set to the node's default (POST /prompt needs them
    all; the values are then the nodes' own defaults)."""
    out = json.loads(json.dumps(api))
    for n in out.values():
        info = object_info[n["class_type"]]
        for name in ordered_inputs(info):
            spec, optional = spec_of(info, name)
            if name not in n["inputs"] and is_widget(spec) and not optional:
                n["inputs"][name] = default_value(spec)
    return out
