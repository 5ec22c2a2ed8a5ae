"""LazyDrag control math: index sets, h_t schedule, activation, masks, merge, cache size."""
import math

import pytest
import torch

from fluxdrag.core.correspondence import build_correspondence
from fluxdrag.core.instructions import parse_instructions, to_token_space
from fluxdrag.core.lazydrag import (
    activation_sigma,
    estimate_cache_bytes,
    extra_kv_mask,
    gated_merge,
    lazydrag_indices,
    output_gate,
)


def _cmap():
    ins = parse_instructions({"version": 1, "image_size": [128, 128],
                              "drags": [{"handle": [40, 40], "target": [88, 40], "mode": "move"}]})
    td = to_token_space(ins, (128, 128))
    return build_correspondence(td, td.grid_hw)


def test_indices_partition_and_sources():
    cm = _cmap()
    ix = lazydrag_indices(cm)
    h, w = cm.grid_hw
    assert ix.bg.numel() == int(cm.background.sum())
    assert ix.id_dst.numel() == int((cm.destination | cm.transition).sum())
    assert set(ix.bg.tolist()).isdisjoint(ix.id_dst.tolist())
    # M~ is identity on the transition band, M on destinations
    for d, s in zip(ix.id_dst.tolist(), ix.id_src.tolist()):
        y, x = divmod(d, w)
        if cm.transition[y, x]:
            assert s == d
        else:
            assert s == int(cm.matching[y, x, 0]) * w + int(cm.matching[y, x, 1])
    assert torch.equal(ix.id_src_unique[ix.id_src_pos], ix.id_src)
    # move by exactly 3 tokens right: each destination's source is 3 columns left
    srcs = ix.y_src_unique[ix.y_src_pos]
    assert torch.equal(srcs, ix.y_dst - 3)
    assert float(ix.y_weight.max()) == 1.0


def test_output_gate_schedule():
    assert output_gate(0, 50) == pytest.approx(0.8)
    assert output_gate(9, 50) == pytest.approx(0.8)      # steps 1-10 at 0.8
    assert output_gate(20, 50) == pytest.approx(0.4)     # halfway through the cosine
    assert output_gate(30, 50) == 0.0 and output_gate(45, 50) == 0.0
    assert output_gate(15, 50) == pytest.approx(0.8 * 0.5 * (1 + math.cos(math.pi * 5 / 20)))


def test_activation_sigma():
    s = torch.linspace(1, 0, 51)
    a = activation_sigma(s, 0.8)
    active = [i for i in range(50) if float(s[i]) > a]
    assert active == list(range(40))
    assert activation_sigma(s, 0.0) == float("inf")


def test_extra_kv_mask():
    m = extra_kv_mask(5, 5, 2, slice(0, 2), torch.float32, torch.device("cpu"))
    assert m.shape == (1, 1, 5, 7)
    assert torch.isinf(m[0, 0, :2, 5:]).all() and (m[0, 0, 2:, :] == 0).all() and (m[0, 0, :, :5] == 0).all()
    assert extra_kv_mask(5, 5, 2, None, torch.float32, torch.device("cpu")) is None
    base = torch.zeros(1, 1, 5, 5)
    base[..., 0, 1] = -torch.inf
    m2 = extra_kv_mask(5, 5, 2, None, torch.float32, torch.device("cpu"), base=base)
    assert torch.isinf(m2[0, 0, 0, 1]) and (m2[..., 5:] == 0).all()


def test_gated_merge():
    y = torch.zeros(1, 3, 2)
    yc = torch.ones(1, 3, 2)
    out = gated_merge(y, yc, torch.tensor([0.0, 0.5, 1.0]))
    assert out[0, :, 0].tolist() == [0.0, 0.5, 1.0]


def test_cache_bytes_hand_computed():
    # 2 blocks, 10 keys of which 4 active, 100 bg tokens, 7 identity sources, 5 merge sources,
    # hidden 64, batch 1, 2 bytes: 2*2*(10*3*100*64 + 4*(2*7+5)*64)
    assert estimate_cache_bytes(2, 10, 4, 100, 7, 5, 64, 1, 2) == 2 * 2 * (10 * 19200 + 4 * 19 * 64)
    # live background queries: k, v only (2·100·64 = 12800 per block and step)
    assert estimate_cache_bytes(2, 10, 4, 100, 7, 5, 64, 1, 2, bg_tensors=2) == 2 * 2 * (10 * 12800 + 4 * 19 * 64)
    # real FLUX.1-dev, 512² (1024 tokens, all background), 50 steps, bf16: the q,k,v alone
    b = estimate_cache_bytes(38, 50, 0, 1024, 0, 0, 3072, 1, 2)
    assert b == 38 * 50 * 3 * 1024 * 3072 * 2
