"""Helpers for the shipped workflows: load, swap real loaders for the test-only ones, inspect."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"  # the UI workflows (ComfyUI's template browser lists them)
API_WORKFLOWS = WORKFLOWS / "api"  # their API twins
EXAMPLE_INPUTS = WORKFLOWS / "example_inputs"

# ComfyUI's FLUX and SD1.5 loaders → the loaders in tests/comfy_test_nodes (same input names)
LOADER_SWAP = {
    "UNETLoader": "FluxDragTestTinyUNET",
    "DualCLIPLoader": "FluxDragTestTinyCLIP",
    "VAELoader": "FluxDragTestTinyVAE",
    "CheckpointLoaderSimple": "FluxDragTestTinySD15Checkpoint",
}


def api_workflows() -> list[Path]:
    return sorted(API_WORKFLOWS.glob("*_api.json"))


def ui_twin(api_path: Path) -> Path:
    """``api/x_api.json`` → ``x.json``."""
    return WORKFLOWS / (api_path.name[: -len("_api.json")] + ".json")


def load_api(path: str | Path) -> dict:
    """An API-format workflow ({node id: {class_type, inputs, _meta}})."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
            isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise ValueError(f"{path} is not an API-format workflow")
    return data


def swap_loaders(api_prompt: dict, mapping: dict[str, str] | None = None) -> dict:
    """A copy with the weight loaders swapped for the test loaders; the rest as shipped."""
    mapping = LOADER_SWAP if mapping is None else mapping
    out = copy.deepcopy(api_prompt)
    for node in out.values():
        node["class_type"] = mapping.get(node["class_type"], node["class_type"])
    return out


def node_types(api_prompt: dict) -> set[str]:
    return {n["class_type"] for n in api_prompt.values()}


def ui_node_types(ui: dict) -> set[str]:
    return {n["type"] for n in ui["nodes"]}


def node_by_title(api_prompt: dict, title: str) -> tuple[str, dict]:
    """(id, node) of the one node whose ``_meta.title`` is ``title``."""
    hits = [(k, n) for k, n in api_prompt.items() if n.get("_meta", {}).get("title") == title]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} nodes titled {title!r}")
    return hits[0]


def set_input(api_prompt: dict, title: str, name: str, value) -> dict:
    """Set one literal input of the node titled ``title`` (in place); returns the prompt."""
    node_by_title(api_prompt, title)[1]["inputs"][name] = value
    return api_prompt


def api_to_ui_module():
    """``scripts/api_to_ui.py`` as a module."""
    from scripts import api_to_ui

    return api_to_ui


def load_png(path, dtype="float32"):
    """An image file (or file-like) as an (H, W, 3) RGB numpy array of ``dtype``."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=dtype)
