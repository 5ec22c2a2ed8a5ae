"""Calls by keyword (issue 25): no call in the runtime (``fluxdrag/`` and the top-level
``__init__.py``) passes more than five positional arguments, so two swapped floats cannot pass
silently. Checked on the source (no import needed).

Not counted: tensor shape methods (``x.reshape(B, C, h, 2, w, 2)``: the arguments are one shape),
and the call that hands ComfyUI's own ``DIFFUSION_MODEL`` executor its arguments in the order
of FLUX's ``_forward`` (``attention_patches/router.py``), which the wrapper must keep as received.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_POSITIONAL = 5
#: tensor methods whose positional arguments are the dimensions of one shape
SHAPE_METHODS = {"reshape", "view", "permute", "expand", "repeat", "tile", "new_zeros", "new_ones",
                 "new_empty", "new_full", "unflatten"}
#: (file, callee) pairs forwarding a signature the pack does not own
PASS_THROUGH = {("fluxdrag/attention_patches/router.py", "executor")}


def _callee(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def long_positional_calls(source: str, rel: str) -> list[str]:
    """``rel:line callee(n positional)`` for every call over the limit in ``source``."""
    bad = []
    for node in ast.walk(ast.parse(source, rel)):
        if not isinstance(node, ast.Call) or len(node.args) <= MAX_POSITIONAL:
            continue
        name = _callee(node)
        if isinstance(node.func, ast.Attribute) and name in SHAPE_METHODS:
            continue
        if (rel, name) in PASS_THROUGH:
            continue
        bad.append(f"{rel}:{node.lineno} {name or '<call>'}({len(node.args)} positional)")
    return bad


def test_no_runtime_call_passes_more_than_five_positional_arguments():
    files = [*sorted((ROOT / "fluxdrag").rglob("*.py")), ROOT / "__init__.py"]
    assert len(files) > 40
    bad = []
    for p in files:
        rel = p.relative_to(ROOT).as_posix()
        bad += long_positional_calls(p.read_text(encoding="utf-8"), rel)
    assert not bad, "pass these by keyword (keyword-only parameters or a dataclass):\n" + "\n".join(bad)


def test_checker_sees_a_long_call_and_leaves_shapes_alone():
    src = ("f(a, b, c, d, e, g)\n"
           "f(a, b, c, d, e, g=1)\n"
           "x.reshape(1, 2, 3, 4, 5, 6)\n"
           "Outcome('flux', a, b, c, d, e, f)\n")
    assert long_positional_calls(src, "fluxdrag/x.py") == ["fluxdrag/x.py:1 f(6 positional)",
                                                          "fluxdrag/x.py:4 Outcome(7 positional)"]
    assert long_positional_calls("executor(a, b, c, d, e, f, g)\n", "fluxdrag/attention_patches/router.py") == []
    assert long_positional_calls("executor(a, b, c, d, e, f, g)\n", "fluxdrag/other.py") != []
