"""Settings schema: each method's settings dataclass declares every field once — default, range,
step, options, tooltip, the paper's value and whether the field is a main-node widget or an
expert option — with :func:`setting`. Everything else is generated from it: the nodes' V3 inputs
(``nodes/common.py``), the validation (:func:`validate`, one helper for every "unknown …;
choose …" and range check), the paper preset (:func:`paper_settings`), the values
``scripts/make_workflows.py`` writes and the docs tables (``scripts/settings_tables.py``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, replace
from typing import Any

from .common import FluxDragInputError

META = "fluxdrag"


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: the paper uses our default (nothing to switch for the paper preset)
SAME = _Marker("SAME")
#: the paper is silent: the default is our choice [guess], kept by the paper preset
SILENT = _Marker("SILENT")


@dataclass(frozen=True)
class Spec:
    """One field of a settings dataclass, as the nodes, validation and docs see it."""

    name: str
    default: Any
    tooltip: str
    kind: str                      # "bool" | "int" | "float" | "str" | "combo"
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple | None = None
    paper: Any = SAME
    main: bool = False             # a widget of the main node (else: on the method's options node)
    node: str = ""                 # which node of the method reads it ("" = the only one)
    multiline: bool = False
    seed: bool = False             # ComfyUI's control_after_generate widget

    @property
    def paper_value(self) -> Any:
        """The paper's value (our default where the paper uses it or is silent)."""
        return self.default if self.paper in (SAME, SILENT) else self.paper

    @property
    def departs(self) -> bool:
        return self.paper not in (SAME, SILENT) and self.paper != self.default


def setting(default: Any, tooltip: str, *, min: float | None = None, max: float | None = None,
            step: float | None = None, options: tuple | list | None = None, paper: Any = SAME,
            main: bool = False, node: str = "", multiline: bool = False, seed: bool = False):
    """A dataclass field carrying its :class:`Spec` (the name and kind are filled in by
    :func:`specs`)."""
    meta = dict(tooltip=tooltip, min=min, max=max, step=step,
                options=None if options is None else tuple(options), paper=paper, main=main, node=node,
                multiline=multiline, seed=seed)
    return dataclasses.field(default=default, metadata={META: meta})


def _kind(default: Any, options) -> str:
    if options is not None:
        return "combo"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"


def specs(cls_or_obj) -> list[Spec]:
    """The :class:`Spec` of every field declared with :func:`setting`, in declaration order."""
    out = []
    for f in fields(cls_or_obj):
        meta = f.metadata.get(META)
        if meta is None:
            continue
        out.append(Spec(name=f.name, default=f.default, kind=_kind(f.default, meta["options"]), **meta))
    return out


def node_fields(cls, node: str = "", main: bool | None = None) -> list[Spec]:
    """The fields a node reads (``node`` "" = every field), only main widgets (``main`` True),
    only options (False) or both (None)."""
    return [s for s in specs(cls) if (not node or s.node == node) and (main is None or s.main == main)]


def paper_settings(cls):
    """The settings with the paper's value for every field (the "paper" preset)."""
    return cls(**{s.name: s.paper_value for s in specs(cls)})


def check_choice(node: str, name: str, value: Any, options) -> None:
    """The one "unknown …; choose …" check: ``value`` must be one of ``options``."""
    opts = tuple(options)
    if value not in opts:
        raise FluxDragInputError(f"{node}: input '{name}' {value!r} unknown; choose "
                                 f"{', '.join(map(str, opts))}.")


def check_range(node: str, name: str, value: Any, lo: float | None = None, hi: float | None = None,
                hint: str = "") -> None:
    """``value`` within [lo, hi] (either end may be open), else a message naming the input."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None
                else f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        raise FluxDragInputError(f"{node}: input '{name}' is {value:g}; it must be {span}"
                                 f"{'; ' + hint if hint else ''}.")


def validate(settings, node: str, names=None) -> None:
    """Choice and range checks of every field (or of ``names``), with messages naming the input."""
    for s in specs(settings):
        if names is not None and s.name not in names:
            continue
        value = getattr(settings, s.name)
        if s.kind == "combo":
            check_choice(node, s.name, value, s.options)
        elif s.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FluxDragInputError(f"{node}: input '{s.name}' must be a number, got {value!r}.")
            check_range(node, s.name, value, s.min, s.max)


@dataclass(frozen=True)
class MethodOptions:
    """What a method's options node outputs: the values of its expert fields."""

    method: str
    values: dict


def with_options(cls, node: str, options: MethodOptions | None = None, **main) -> Any:
    """``cls``'s defaults, overridden by the options node's values and then by the main node's
    widgets (``None`` values are skipped), validated."""
    s = cls()
    if options is not None:
        if not isinstance(options, MethodOptions) or options.method != cls.METHOD:
            got = getattr(options, "method", type(options).__name__)
            raise FluxDragInputError(f"{node}: input 'options' comes from a {got} options node; "
                                     f"connect FluxDrag {cls.METHOD} Options.")
        s = replace(s, **{k: v for k, v in options.values.items() if hasattr(s, k)})
    s = replace(s, **{k: v for k, v in main.items() if v is not None})
    validate(s, node)
    return s


def overrides(settings, cls, **kw):
    """``settings`` (default: ``cls()``) with the keyword overrides applied (unknown names raise
    TypeError, as a wrong keyword would)."""
    s = settings if settings is not None else cls()
    return replace(s, **kw) if kw else s


def pick(settings, names) -> dict:
    """The named fields as keyword arguments (for a controller's keyword-only constructor)."""
    return {n: getattr(settings, n) for n in names}


def departures(cls) -> dict:
    """{field: the paper's value} for every field where ours differs (the paper preset's changes)."""
    return {s.name: s.paper for s in specs(cls) if s.departs}
