"""DragFlow's K/V injection layer sets (docs/dragflow.md, "K/V injection"; FreeFlux, arXiv
2503.16153): ``non-ridge`` / ``position`` in FLUX.1
block indices, mapped proportionally onto models of another depth [guess], or a literal custom
list. Pure Python."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: DragFlow's ``hook_block_combo`` lists (FreeFlux's layer roles, arXiv 2503.16153), in FLUX.1
#: block indices: (double blocks, single blocks).
KV_PRESETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "non-ridge": ((0, 7, 8, 9, 10, 18), (6, 9, 18, 23, 26, 31, 37)),
    "position": ((1, 2, 4), (7, 11, 35, 36)),
    "none": ((), ()),
}
FLUX1_BLOCKS = (19, 38)  # double, single blocks of FLUX.1 [dev]


@dataclass(frozen=True)
class LayerSelection:
    """Blocks whose image (and, in single blocks, text) K/V are injected; ``notes`` says what
    was mapped or dropped on the way."""

    double: tuple[int, ...]
    single: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.double) + len(self.single)


def map_block_indices(indices: Sequence[int], n_reference: int, n_model: int,
                      keep_fraction: bool = True) -> tuple[int, ...]:
    """Map block indices of an ``n_reference``-block stack proportionally onto ``n_model`` blocks:
    i ↦ ⌊i·(n_model − 1)/(n_reference − 1) + ½⌋ (first ↦ first, last ↦ last), deduplicated.

    ``keep_fraction`` [guess, ours]: a smaller stack keeps about the same *share* of its blocks,
    k = max(1, round(#indices · n_model / n_reference)); when the mapping hits more than k blocks,
    the k hit by the most reference indices are kept (ties: the earlier block). Without it a
    preset covering a quarter of FLUX.1's blocks covers every block of a small model, and K/V
    injection then pins the whole image to the source."""
    if n_model <= 0:
        return ()
    if n_reference <= 1 or n_model == n_reference:
        return tuple(sorted({i for i in indices if 0 <= i < n_model}))
    f = (n_model - 1) / (n_reference - 1)
    hits: dict[int, int] = {}
    for i in sorted(set(indices)):
        j = min(n_model - 1, int(math.floor(i * f + 0.5)))
        hits[j] = hits.get(j, 0) + 1
    if keep_fraction and n_model < n_reference:
        k = max(1, round(len(set(indices)) * n_model / n_reference))
        if len(hits) > k:
            best = sorted(hits, key=lambda j: (-hits[j], j))[:k]
            hits = {j: hits[j] for j in best}
    return tuple(sorted(hits))


def parse_layer_list(text: str, n_double: int, n_single: int) -> LayerSelection:
    """A custom K/V layer list, taken literally on this model (no mapping).

    Either labelled — ``"double: 0, 7, 18; single: 6, 37"`` — or global FLUX-style indices
    ``"0, 7, 25"`` where g < n_double is double block g and otherwise single block g − n_double.
    Indices beyond the model are dropped with a note; anything unparsable raises ValueError."""
    notes: list[str] = []
    double: set[int] = set()
    single: set[int] = set()
    body = text.strip()
    if not body:
        return LayerSelection((), (), ("empty custom list: no K/V injection",))

    def ints(part: str, where: str) -> list[int]:
        out = []
        for tok in part.replace(";", ",").split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                out.append(int(tok))
            except ValueError:
                raise ValueError(
                    f"custom K/V layer list: {tok!r} in {where} is not an integer; write e.g. "
                    "'double: 0, 7; single: 6, 37' or global indices '0, 7, 25'") from None
        return out

    low = body.lower()
    if "double" in low or "single" in low:
        for chunk in low.split(";"):
            chunk = chunk.strip()
            if not chunk:
                continue
            if ":" not in chunk:
                raise ValueError(
                    f"custom K/V layer list: {chunk!r} needs a 'double:' or 'single:' label")
            label, rest = chunk.split(":", 1)
            label = label.strip()
            if label not in ("double", "single"):
                raise ValueError(f"custom K/V layer list: unknown label {label!r} (double or single)")
            n = n_double if label == "double" else n_single
            target = double if label == "double" else single
            for i in ints(rest, label):
                if 0 <= i < n:
                    target.add(i)
                else:
                    notes.append(f"{label} block {i} dropped: the model has {n} {label} blocks")
    else:
        for g in ints(body, "the list"):
            if 0 <= g < n_double:
                double.add(g)
            elif n_double <= g < n_double + n_single:
                single.add(g - n_double)
            else:
                notes.append(f"global block {g} dropped: the model has {n_double + n_single} blocks")
    return LayerSelection(tuple(sorted(double)), tuple(sorted(single)), tuple(notes))


def kv_layers(
    preset: str,
    n_double: int,
    n_single: int,
    custom: str = "",
    reference: tuple[int, int] = FLUX1_BLOCKS,
) -> LayerSelection:
    """The K/V injection blocks of a preset on a model with ``n_double``/``n_single`` blocks.

    ``non-ridge`` (default) / ``position`` are given in FLUX.1's indices (19 + 38 blocks); on a
    model of that size they are used as is, on any other size they are mapped proportionally
    per stack with :func:`map_block_indices`, keeping about the preset's share of each stack
    [guess; e.g. ``non-ridge`` on a 2+4-block model: double 0, single 1]. ``none`` selects
    nothing; ``custom`` parses ``custom`` with :func:`parse_layer_list`
    (literal indices, out-of-range ones dropped with a note)."""
    key = str(preset).strip().lower()
    if key == "custom":
        return parse_layer_list(custom, n_double, n_single)
    if key not in KV_PRESETS:
        raise ValueError(f"unknown K/V preset {preset!r}; choose non-ridge, position, none or custom")
    d, s = KV_PRESETS[key]
    notes = []
    if (n_double, n_single) != tuple(reference) and (d or s):
        notes.append(
            f"preset {key!r} is defined for {reference[0]}+{reference[1]} blocks; mapped "
            f"proportionally onto this model's {n_double}+{n_single}")
    return LayerSelection(
        map_block_indices(d, reference[0], n_double),
        map_block_indices(s, reference[1], n_single),
        tuple(notes),
    )
