"""Convert an API-format ComfyUI workflow to the UI (litegraph, version 0.4) format.

Dev tool: run it against a ComfyUI server you started (the pack must be loaded there), and commit
the output next to the API file::

    python -m scripts.api_to_ui workflows/invert_reconstruct_api.json \
        --server http://127.0.0.1:8188 -o workflows/invert_reconstruct.json

The server's ``/object_info`` says which inputs are widgets and in which order the frontend
creates them (``input_order``: required, then optional, then extras such as LoadImage's upload
button), so ``widgets_values`` line up with the widgets the frontend builds, including the
``control_after_generate`` value that follows a seed. Nodes are laid out left to right by graph
depth. Stdlib only (plus the pack's ``tools/object_info``).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from tools.object_info import (
    default_value,
    is_widget,
    ordered_inputs,
)
from tools.object_info import opts_of as _opts
from tools.object_info import spec_of as _spec

ROOT = Path(__file__).resolve().parent.parent

MEDIA_UPLOAD_KEYS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")
COLUMN_W, GAP_Y, NODE_W = 400, 40, 320
TITLE_H, SLOT_H, WIDGET_H = 30, 22, 26
CONTROL_AFTER_GENERATE = "fixed"  # shipped workflows are reproducible
# nodes whose frontend extension sizes them itself: the size it gives a new node (the Drag Editor:
# DEFAULT_NODE_SIZE in js/fluxdrag_editor.js, a 400 px canvas), so the layout leaves room for it
NODE_SIZES = {"FluxDragDragEditor": [440.0, 580.0]}


def has_control_widget(name: str, spec: list) -> bool:
    """Whether the frontend adds a control_after_generate widget after this input's widget: an INT
    whose spec asks for one, or (spec silent) one named seed / noise_seed (frontend 1.35,
    useIntWidget)."""
    if spec[0] != "INT":
        return False
    control = _opts(spec).get("control_after_generate")
    return bool(control) if control is not None else name in ("seed", "noise_seed")


def widget_slots(node_info: dict) -> list[tuple[str, str, dict]]:
    """(widget name, kind, options) in widgets_values order.

    kind: "value" (an input's widget), "control" (control_after_generate after a seed) or
    "upload" (the media upload button the frontend adds for image_upload combos).
    """
    slots: list = []
    upload = False
    for name in ordered_inputs(node_info):
        spec, _ = _spec(node_info, name)
        if not is_widget(spec):
            continue
        opts = _opts(spec)
        slots.append((name, "value", opts))
        if has_control_widget(name, spec):
            slots.append(("control_after_generate", "control", opts))
        upload = upload or any(opts.get(k) for k in MEDIA_UPLOAD_KEYS)
    if upload:
        slots.append(("upload", "upload", {}))
    return slots


def _is_link(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[1], int)


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str, stack: tuple = ()) -> int:
        if nid in depth:
            return depth[nid]
        if nid in stack:
            raise ValueError(f"cycle through node {nid}")
        ups = [str(v[0]) for v in api[nid].get("inputs", {}).values() if _is_link(v)]
        depth[nid] = 1 + max((visit(u, stack + (nid,)) for u in ups), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def _size(node_info: dict, n_in: int, n_out: int, slots: list) -> list[float]:
    if node_info.get("name") in NODE_SIZES:
        return list(NODE_SIZES[node_info["name"]])
    h = TITLE_H + SLOT_H * max(n_in, n_out, 0) + WIDGET_H * len(slots)
    for _name, kind, opts in slots:
        if kind == "value" and opts.get("multiline"):
            h += 80
        if kind == "upload":
            h += 240  # image preview
    if node_info.get("output_node") and not node_info.get("output"):
        h = max(h, 270)  # SaveImage & co. show the image
    return [NODE_W, float(h)]


def api_to_ui(api: dict, object_info: dict) -> dict:
    """The UI-format workflow for an API-format one (same nodes, links, titles and values)."""
    api = {str(k): v for k, v in api.items()}
    missing = sorted({n["class_type"] for n in api.values()} - set(object_info))
    if missing:
        raise KeyError(f"node types unknown to the server: {missing}")
    ids = {nid: (int(nid) if nid.isdigit() else None) for nid in api}
    next_id = max([i for i in ids.values() if i is not None], default=0) + 1
    for nid in api:
        if ids[nid] is None:
            ids[nid], next_id = next_id, next_id + 1

    depth = _depths(api)
    order = sorted(api, key=lambda n: (depth[n], ids[n]))
    nodes: dict[str, dict] = {}
    for nid in order:
        a = api[nid]
        info = object_info[a["class_type"]]
        outputs = [{"name": name, "type": typ, "links": None, "slot_index": k}
                   for k, (typ, name) in enumerate(zip(info.get("output", []),
                                                       info.get("output_name", []), strict=True))]
        node = {"id": ids[nid], "type": a["class_type"], "pos": [0.0, 0.0], "size": [0.0, 0.0],
                "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": outputs,
                "properties": {"Node name for S&R": a["class_type"]}, "widgets_values": []}
        title = a.get("_meta", {}).get("title")
        if title and title != (info.get("display_name") or a["class_type"]):
            node["title"] = title
        nodes[nid] = node

    links: list = []
    for nid in order:
        a, node = api[nid], nodes[nid]
        info = object_info[a["class_type"]]
        values = a.get("inputs", {})
        for name in ordered_inputs(info):
            spec, _ = _spec(info, name)
            v = values.get(name)
            widget = is_widget(spec)
            if widget and not _is_link(v):
                continue
            entry = {"name": name, "type": "COMBO" if isinstance(spec[0], list) else spec[0],
                     "link": None}
            if widget:
                entry["widget"] = {"name": name}
            if _is_link(v):
                src, slot = str(v[0]), v[1]
                link_id = len(links) + 1
                typ = nodes[src]["outputs"][slot]["type"]
                links.append([link_id, ids[src], slot, node["id"], len(node["inputs"]), typ])
                entry["link"] = link_id
                out = nodes[src]["outputs"][slot]
                out["links"] = (out["links"] or []) + [link_id]
            node["inputs"].append(entry)
        wv = []
        for name, kind, opts in widget_slots(info):
            if kind == "control":
                c = opts.get("control_after_generate")
                wv.append(c if isinstance(c, str) else CONTROL_AFTER_GENERATE)
            elif kind == "upload":
                wv.append("image")
            else:
                v = values.get(name)
                wv.append(default_value(_spec(info, name)[0]) if v is None or _is_link(v) else v)
        node["widgets_values"] = wv
        node["size"] = _size(info, len(node["inputs"]), len(node["outputs"]),
                             widget_slots(info))

    # layout: one column per depth (as wide as its widest node), nodes stacked in id order
    col_x: dict[int, float] = {0: 0.0}
    for d in range(1, max(depth.values(), default=0) + 1):
        widest = max((nodes[n]["size"][0] for n in order if depth[n] == d - 1), default=NODE_W)
        col_x[d] = col_x[d - 1] + max(COLUMN_W, widest + COLUMN_W - NODE_W)
    col_y: dict[int, float] = {}
    for k, nid in enumerate(order):
        node, d = nodes[nid], depth[nid]
        y = col_y.get(d, 0.0)
        node["pos"] = [col_x[d], y]
        node["order"] = k
        col_y[d] = y + node["size"][1] + GAP_Y

    return {
        "last_node_id": max(n["id"] for n in nodes.values()) if nodes else 0,
        "last_link_id": len(links),
        "nodes": [nodes[n] for n in sorted(nodes, key=lambda n: nodes[n]["id"])],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def fetch_object_info(server: str) -> dict:
    with urllib.request.urlopen(server.rstrip("/") + "/object_info", timeout=60) as r:
        return json.loads(r.read())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("api", type=Path, help="API-format workflow (…_api.json)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--server", help="running ComfyUI, e.g. http://127.0.0.1:8188")
    src.add_argument("--object-info", type=Path, help="a saved /object_info JSON")
    ap.add_argument("-o", "--out", type=Path, help="output file (default: stdout)")
    args = ap.parse_args(argv)
    info = (fetch_object_info(args.server) if args.server
            else json.loads(args.object_info.read_text(encoding="utf-8")))
    ui = api_to_ui(json.loads(args.api.read_text(encoding="utf-8")), info)
    text = json.dumps(ui, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
