"""Import rules between the pack's layers (checked on the source, no import needed).

- ``core/`` never imports ComfyUI (``comfy``, ``comfy_api``, ``comfy_extras``, ``folder_paths``...).
- runtime code (everything but ``bench/``, ``tools/``, ``scripts/``, ``tests/``) never imports
  ``bench``, ``tools``, ``scripts`` or ``tests``, and never looks for ComfyUI on disk.
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
