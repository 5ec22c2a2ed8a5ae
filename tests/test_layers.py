"""Import rules between the pack's layers (checked on the source, no import needed); the layers
are described in ``docs/architecture.md``.

- runtime code is the package ``fluxdrag/`` plus the repository's ``__init__.py`` (ComfyUI's entry);
  ``bench/``, ``tools/``, ``scripts/`` and ``tests/`` sit outside it.
- ``fluxdrag/core/`` never imports ComfyUI (``comfy``, ``comfy_api``, ``comfy_extras``, ``folder_paths``...).
- runtime code never imports ``bench``, ``tools``, ``scripts`` or ``tests``, never looks for ComfyUI
  on disk, and imports its own modules relatively (ComfyUI loads the pack under its folder's name,
  so an absolute ``import fluxdrag`` would load a second copy, or nothing).
- the repository root holds no module named like one of ComfyUI's (``nodes``...), so tests, benchmarks
  and scripts can put it on ``sys.path`` next to ComfyUI.
- each runtime layer imports only the layers below it: ``core`` ← ``attention_patches`` ←
  ``pipelines`` ← ``nodes`` (``toyworld`` uses ``core``; ``nodes`` may use ``toyworld``); only
  ``nodes`` knows the node API (``comfy_api``); no node module takes another one's private names.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fluxdrag"
DEV = {"bench", "tools", "scripts", "tests"}
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
    """The runtime layer (``fluxdrag``'s top-level folder) or dev package (``bench``, ``tools``,
    ``scripts``, ``tests``) an import lands in ('' = outside the repository, '<root>' = a package
    itself)."""
    if level == 0:
        parts = module.split(".")
        if parts[0] == "fluxdrag":
            return parts[1] if len(parts) > 1 else "<root>"
        return parts[0] if parts[0] in DEV else ""
    rel = path.relative_to(ROOT).parent.parts
    base = rel[: len(rel) - (level - 1)] if level - 1 <= len(rel) else ()
    target = list(base) + [p for p in module.split(".") if p]
    if target[:1] == ["fluxdrag"]:
        target = target[1:]
    return target[0] if target else "<root>"


def _runtime_files():
    yield from PKG.rglob("*.py")


def test_core_never_imports_comfy():
    bad = []
    for p in (PKG / "core").rglob("*.py"):
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
            if top in DEV:
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
    # the resolver itself: ``from ...bench import x`` in fluxdrag/nodes/ lands in bench
    assert _resolve(PKG / "nodes" / "a.py", 3, "bench.toybench") == "bench"
    assert _resolve(PKG / "nodes" / "a.py", 1, "common") == "nodes"
    assert _resolve(PKG / "toyworld" / "a.py", 0, "tools.comfy_env") == "tools"
    assert _resolve(ROOT / "__init__.py", 1, "fluxdrag.nodes") == "nodes"


def test_runtime_imports_itself_relatively():
    bad = []
    for p in list(_runtime_files()) + [ROOT / "__init__.py"]:
        for level, mod in _imports(p):
            if level == 0 and mod.split(".")[0] == "fluxdrag":
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_repository_root_shadows_no_comfyui_module():
    tops = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert {"fluxdrag", "bench", "tools", "scripts"} <= tops
    assert not tops & COMFY_MODULES, tops & COMFY_MODULES


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
        files = list((PKG / layer).rglob("*.py"))
        assert files, layer
        for p in files:
            for level, mod in _imports(p):
                top = _resolve(p, level, mod)
                if top and top != "<root>" and top not in DEV and top not in allowed:
                    bad.append(f"{p.relative_to(ROOT)} imports {'.' * level}{mod} ({top} is above {layer})")
    assert not bad, bad


def test_only_nodes_know_the_node_api():
    bad = []
    for p in _runtime_files():
        if p.relative_to(PKG).parts[0] == "nodes":
            continue
        for level, mod in _imports(p):
            if level == 0 and mod.split(".")[0] == "comfy_api":
                bad.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_no_node_module_imports_another_ones_privates():
    bad = []
    for p in (PKG / "nodes").glob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for a in node.names:
                    if a.name.startswith("_"):
                        bad.append(f"{p.relative_to(ROOT)} imports {a.name} from .{node.module}")
    assert not bad, bad


def test_layer_checker_catches_an_upward_import(tmp_path):
    # the resolver sees a pipeline importing a node module, and a core module importing a pipeline
    assert _resolve(PKG / "pipelines" / "a.py", 2, "nodes.common") == "nodes"
    assert _resolve(PKG / "core" / "a.py", 2, "pipelines.inversion") == "pipelines"
    assert "nodes" not in ALLOWED["pipelines"] and "pipelines" not in ALLOWED["attention_patches"]


def test_no_runtime_module_over_600_lines():
    """Modules by concern (issue 25): no runtime module is longer than 600 lines."""
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, f"runtime modules over 600 lines (split them by concern): {long}"
