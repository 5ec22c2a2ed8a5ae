"""Import rules between the pack's layers (checked on the source, no import needed); the layers
are described in ``docs/architecture.md``.

- ``core/`` never imports ComfyUI (``comfy``, ``comfy_api``, ``comfy_extras``, ``folder_paths``...).
- runtime code (everything but ``bench/``, ``tools/``, ``scripts/``, ``tests/``) never imports
  ``bench``, ``tools``, ``scripts`` or ``tests``, and never looks for ComfyUI on disk.
- each runtime layer imports only the layers below it: ``core`` ← ``attention_patches`` ←
  ``pipelines`` ← ``nodes`` (``toyworld`` uses ``core``; ``nodes`` may use ``toyworld``); only
  ``nodes`` knows the node API (``comfy_api``); no node module takes another one's private names.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NON_RUNTIME = {"bench", "tools", "scripts", "tests", "js", "workflows", "docs", "node_modules", ".ci"}
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes",
                 "server", "execution", "node_helpers", "latent_preview"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


def _resolve(path: Path, level: int, module: str) -> str:
    """Top-level folder of the pack an import lands in ('' = outside the pack)."""
    if level == 0:
        parts = module.split(".")
        return parts[1] if parts[0] == "fluxdrag" and len(parts) > 1 else ""
    rel = path.relative_to(ROOT).parent.parts
    base = rel[: len(rel) - (level - 1)] if level - 1 <= len(rel) else ()
    target = list(base) + [p for p in module.split(".") if p]
    return target[0] if target else "<root>"


def _runtime_files():
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT).parts
        if rel[0] in NON_RUNTIME or len(rel) == 1:
            continue
        yield p


def test_core_never_imports_comfy():
    bad = []
    for p in (ROOT / "core").rglob("*.py"):
        for level, mod in _imports(p):
            if level == 0 and mod.split(".")[0] in COMFY_MODULES:
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_runtime_never_imports_upward():
    bad = []
    files = list(_runtime_files()) + [ROOT / "__init__.py"]
    assert any(p.parts[-2] == "nodes" for p in files) and any(p.parts[-2] == "toyworld" for p in files)
    for p in files:
        for level, mod in _imports(p):
            top = _resolve(p, level, mod)
            if top in {"bench", "tools", "scripts", "tests"}:
                bad.append(f"{p.relative_to(ROOT)} imports {'.' * level}{mod}")
    assert not bad, bad


def test_runtime_never_looks_for_comfyui():
    bad = []
    for p in list(_runtime_files()) + [ROOT / "__init__.py"]:
        text = p.read_text(encoding="utf-8")
        for needle in ("find_comfyui", "import_comfy", "COMFYUI_PATH", "cli_args.args."):
            if needle in text:
                bad.append(f"{p.relative_to(ROOT)} uses {needle}")
    assert not bad, bad


def test_rule_checker_sees_relative_imports():
    # the resolver itself: ``from ..bench import x`` in nodes/ lands in bench
    assert _resolve(ROOT / "nodes" / "a.py", 2, "bench.toyworld") == "bench"
    assert _resolve(ROOT / "nodes" / "a.py", 1, "common") == "nodes"
    assert _resolve(ROOT / "toyworld" / "a.py", 0, "fluxdrag.tools.comfy_env") == "tools"


#: pack folders each runtime layer may import (itself included)
ALLOWED = {
    "core": {"core"},
    "attention_patches": {"attention_patches", "core"},
    "pipelines": {"pipelines", "attention_patches", "core"},
    "nodes": {"nodes", "pipelines", "attention_patches", "core", "toyworld"},
    "toyworld": {"toyworld", "core"},
}


def test_layers_import_only_downward():
    bad = []
    for layer, allowed in ALLOWED.items():
        files = list((ROOT / layer).rglob("*.py"))
        assert files, layer
        for p in files:
            for level, mod in _imports(p):
                top = _resolve(p, level, mod)
                if top and top != "<root>" and (level > 0 or mod.startswith("fluxdrag.")) and top not in allowed:
                    bad.append(f"{p.relative_to(ROOT)} imports {'.' * level}{mod} ({top} is above {layer})")
    assert not bad, bad


def test_only_nodes_know_the_node_api():
    bad = []
    for p in _runtime_files():
        if p.relative_to(ROOT).parts[0] == "nodes":
            continue
        for level, mod in _imports(p):
            if level == 0 and mod.split(".")[0] == "comfy_api":
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_no_node_module_imports_another_ones_privates():
    bad = []
    for p in (ROOT / "nodes").glob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for a in node.names:
                    if a.name.startswith("_"):
                        bad.append(f"{p.relative_to(ROOT)} imports {a.name} from .{node.module}")
    assert not bad, bad


def test_layer_checker_catches_an_upward_import(tmp_path):
    # the resolver sees a pipeline importing a node module, and a core module importing a pipeline
    assert _resolve(ROOT / "pipelines" / "a.py", 2, "nodes.common") == "nodes"
    assert _resolve(ROOT / "core" / "a.py", 2, "pipelines.inversion") == "pipelines"
    assert "nodes" not in ALLOWED["pipelines"] and "pipelines" not in ALLOWED["attention_patches"]
