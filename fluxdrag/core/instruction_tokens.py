"""Pixel -> FLUX token conversion, the only place (split from ``instructions.py``; re-exported
there). Token (i, j) covers pixels [16j, 16j+16) x [16i, 16i+16); the continuous token coordinate
of pixel coordinate p is p / 16 - 0.5, so token centres are integers."""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .instruction_masks import rle_decode, rle_encode
from .instruction_values import TOKEN_PX

if TYPE_CHECKING:
    from .instructions import DragInstructions


@dataclass
class TokenDrags:
    """Drags on the FLUX token grid (float token coordinates, (x, y) order).

    handles, targets, scales: (n, 2) float64; modes: n strings; mask: (h, w) bool editable
    region on the token grid or None; grid_hw = (h, w) tokens; image_hw = (H, W) pixels;
    angles: (n,) float64 degrees (move mode; clockwise on screen), None = all 0; depths: n
    per-drag depth intents ("auto" | "front" | "behind", the instructions' ``depth``), None = all
    "auto".
    """

    handles: torch.Tensor
    targets: torch.Tensor
    modes: list[str]
    scales: torch.Tensor
    mask: torch.Tensor | None
    grid_hw: tuple[int, int]
    image_hw: tuple[int, int]
    angles: torch.Tensor | None = None
    depths: list[str] | None = None

    def __post_init__(self) -> None:
        if self.angles is None:
            self.angles = torch.zeros(int(self.handles.shape[0]), dtype=torch.float64)
        if self.depths is None:
            self.depths = ["auto"] * int(self.handles.shape[0])

    def __len__(self) -> int:
        return int(self.handles.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "handles": self.handles.tolist(),
            "targets": self.targets.tolist(),
            "modes": list(self.modes),
            "scales": self.scales.tolist(),
            "mask": None if self.mask is None else rle_encode(self.mask),
            "grid_hw": list(self.grid_hw),
            "image_hw": list(self.image_hw),
            "angles": self.angles.tolist(),
            "depths": list(self.depths),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenDrags:
        n = len(d["handles"])
        return cls(
            handles=torch.tensor(d["handles"], dtype=torch.float64).reshape(n, 2),
            targets=torch.tensor(d["targets"], dtype=torch.float64).reshape(n, 2),
            modes=list(d["modes"]),
            scales=torch.tensor(d["scales"], dtype=torch.float64).reshape(n, 2),
            mask=None if d.get("mask") is None else rle_decode(d["mask"]),
            grid_hw=(int(d["grid_hw"][0]), int(d["grid_hw"][1])),
            image_hw=(int(d["image_hw"][0]), int(d["image_hw"][1])),
            angles=torch.tensor(d.get("angles") or [0.0] * n, dtype=torch.float64).reshape(n),
            depths=list(d.get("depths") or ["auto"] * n),
        )


def _check_multiple_of_16(W: int, H: int) -> None:
    if W % TOKEN_PX or H % TOKEN_PX or W <= 0 or H <= 0:
        dn = (max(TOKEN_PX, W // TOKEN_PX * TOKEN_PX), max(TOKEN_PX, H // TOKEN_PX * TOKEN_PX))
        up = (-(-W // TOKEN_PX) * TOKEN_PX, -(-H // TOKEN_PX) * TOKEN_PX)
        raise ValueError(
            f"image size {W}x{H} (WxH) is not a multiple of {TOKEN_PX}: FLUX tokens cover "
            f"{TOKEN_PX}x{TOKEN_PX} pixels. Crop to {dn[0]}x{dn[1]} or resize to {up[0]}x{up[1]} "
            "(e.g. with an ImageScale/ImageCrop node) before editing"
        )


def token_grid_shape(W: int, H: int) -> tuple[int, int]:
    """Token grid (h_tok, w_tok) of a W x H pixel image; refuses sizes not a multiple of 16."""
    _check_multiple_of_16(int(W), int(H))
    return int(H) // TOKEN_PX, int(W) // TOKEN_PX


def pixel_to_token(
    xy: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor,
    image_size_px: tuple[int, int],
) -> torch.Tensor:
    """Pixel (x, y) -> continuous token (x, y) = p / 16 - 0.5 (token centres are integers).

    ``image_size_px`` is (W, H) and must be a multiple of 16. Returns float64 (..., 2).
    """
    token_grid_shape(*image_size_px)
    p = torch.as_tensor(xy, dtype=torch.float64)
    return p / TOKEN_PX - 0.5


def token_to_pixel(xy_tok: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`pixel_to_token`: token (x, y) -> pixel (x, y) of the token centre."""
    return (torch.as_tensor(xy_tok, dtype=torch.float64) + 0.5) * TOKEN_PX


def pixel_mask_to_token_mask(mask: torch.Tensor, how: str = "any") -> torch.Tensor:
    """Reduce a pixel mask (H, W) to the token grid (H/16, W/16).

    ``how="any"``: a token is set when any of its pixels is [guess, default];
    ``"majority"``: when more than half of its 256 pixels are.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    H, W = mask.shape
    h, w = token_grid_shape(W, H)
    m = mask.to(torch.bool).reshape(h, TOKEN_PX, w, TOKEN_PX)
    if how == "any":
        return m.any(dim=3).any(dim=1)
    if how == "majority":
        return m.sum(dim=(1, 3)) * 2 > TOKEN_PX * TOKEN_PX
    raise ValueError(f'how must be "any" or "majority", got {how!r}')


def to_token_space(
    instr: DragInstructions | str | Mapping[str, Any],
    image_hw_px: tuple[int, int],
    *,
    mask_how: str = "any",
    on_size_mismatch: str = "rescale",
    snap: bool = False,
) -> TokenDrags:
    """Convert instructions to token coordinates for an image of (H, W) pixels.

    When the instructions were drawn on an image of another size they are rescaled
    proportionally per axis with a warning (``on_size_mismatch="rescale"``) [guess] or refused
    (``"error"``). ``snap=True`` rounds handles and targets to token centres.
    """
    from .instructions import parse_instructions, rescale  # the document module imports this one

    ins = parse_instructions(instr)
    H, W = int(image_hw_px[0]), int(image_hw_px[1])
    h, w = token_grid_shape(W, H)
    if min(h, w) < 2:
        warnings.warn(
            f"the image is {W}x{H} px, {w}x{h} FLUX token(s) of {TOKEN_PX} px: along a side one "
            f"token wide nothing can move to another token; use an image of at least "
            f"{2 * TOKEN_PX} px per side", stacklevel=2)
    if tuple(ins.image_size) != (W, H):
        msg = (
            f"DRAG_INSTRUCTIONS were drawn on a {ins.image_size[0]}x{ins.image_size[1]} image but "
            f"the image is {W}x{H} (WxH)"
        )
        if on_size_mismatch == "error":
            raise ValueError(msg + "; redraw the drags on this image or rescale them")
        if on_size_mismatch != "rescale":
            raise ValueError(f'on_size_mismatch must be "rescale" or "error", got '
                             f"{on_size_mismatch!r}")
        warnings.warn(msg + "; rescaling the drags proportionally", stacklevel=2)
        ins = rescale(ins, (W, H))
    n = len(ins.drags)
    handles = pixel_to_token([d.handle for d in ins.drags], (W, H)).reshape(n, 2)
    targets = pixel_to_token([d.target for d in ins.drags], (W, H)).reshape(n, 2)
    if snap:
        handles = torch.floor(handles + 0.5)
        targets = torch.floor(targets + 0.5)
    scales = torch.tensor([d.scale for d in ins.drags], dtype=torch.float64).reshape(n, 2)
    mask = None if ins.mask is None else pixel_mask_to_token_mask(ins.mask, mask_how)
    return TokenDrags(
        handles=handles,
        targets=targets,
        modes=[d.mode for d in ins.drags],
        scales=scales,
        mask=mask,
        grid_hw=(h, w),
        image_hw=(H, W),
        angles=torch.tensor([d.angle for d in ins.drags], dtype=torch.float64).reshape(n),
        depths=[d.depth for d in ins.drags],
    )
