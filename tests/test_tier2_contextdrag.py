"""ContextDrag on a tiny FLUX in real ComfyUI with a Kontext reference latent (ReferenceLatent).

ComfyUI 0.8.0 loads FLUX.1 Kontext [dev] with the same ``supported_models.Flux`` config as FLUX.1
[dev], so the tiny FLUX of ``tools/comfy_env`` sampled with a ``reference_latents`` conditioning
is a Kontext model in every respect the patches see.

Drag used throughout: tokens within radius 2.69 of (4, 4) (the default disc, |d| / 2 for
d = (5, 2)), moved rigidly by (+5, +2) on the 16x16 token grid: src(q) = q - (5, 2) exactly.
"""
import pytest
import torch
from comfy_fixtures import comfy, latent, sample_plain, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2

# token (4, 4) -> (9, 6) is pixel (72, 72) -> (152, 104) on a 256x256 image
DRAGS = {"version": 1, "image_size": [256, 256],
         "drags": [{"handle": [72, 72], "target": [152, 104], "mode": "move"}]}
W = 16
N_TXT, N_IMG = 8, 256
IMG0, REF0, N = N_TXT, N_TXT + N_IMG, N_TXT + 2 * N_IMG
DISC = [(dx, dy) for dy in range(-2, 3) for dx in range(-2, 3) if dx * dx + dy * dy <= 7.25]
SRC = sorted((4 + dy) * W + 4 + dx for dx, dy in DISC)                  # M_SRC, flat y*16+x
DST = sorted((6 + dy) * W + 9 + dx for dx, dy in DISC)                  # M_DST
SRC_OF = {(6 + dy) * W + 9 + dx: (4 + dy) * W + 4 + dx for dx, dy in DISC}  # q -> src(q)


def watch_runs():
    from fluxdrag.attention_patches.router import watch_runs as w
    return w()


def _kontext(cond, seed=3, h=32, w=32):
    from comfy_extras.nodes_edit_model import ReferenceLatent
    return ReferenceLatent.execute(cond, latent(seed, h, w)).args[0]


def _map(h=32, w=32, **kw):
    from fluxdrag.nodes import contextdrag as cd
    return cd.ReverseMapping.execute(DRAGS, latent(3, h, w), **kw).args[0]


class Recorder:
    """Controller that records what the next attention function receives."""

    def __new__(cls, steps=(0.0,)):
        from fluxdrag.attention_patches.router import Controller

        class _R(Controller):
            name = "recorder"

            def __init__(s):
                s.calls = []

            def attention(s, call, next_fn):
                if call.ctx.step in steps:
                    s.calls.append(dict(block=(call.block_type, call.block_index), k=call.k.clone(),
                                        v=call.v.clone(), mask=None if call.mask is None else call.mask.clone(),
                                        pe=call.ctx.pe().clone(), n_k=call.k.shape[2]))
                return next_fn(call.q, call.k, call.v, call.mask)
        return _R()


def test_map_node_is_the_hand_computed_translation(comfy):
    from fluxdrag.nodes import contextdrag as cd
    from fluxdrag.nodes.common import FluxDragInputError
    out = cd.ReverseMapping.execute(DRAGS, latent(3))
    rmap, prev = out.args
    assert rmap.grid_hw == (16, 16)
    assert torch.nonzero(rmap.src_mask.reshape(-1)).flatten().tolist() == SRC
    assert torch.nonzero(rmap.dst_mask.reshape(-1)).flatten().tolist() == DST
    for q, s in SRC_OF.items():
        assert rmap.src[q // W, q % W].tolist() == [s % W, s // W]
    assert prev.shape == (1, 256, 256, 3)
    p = prev[0]
    green = (p[..., 1] > p[..., 0] + 0.15) & (p[..., 1] > p[..., 2] + 0.15)
    red = (p[..., 0] > p[..., 1] + 0.15) & (p[..., 0] > p[..., 2] + 0.15)
    assert green[104, 168] and red[56, 88]  # token (10, 6) is a destination, (5, 3) vacated
    assert not green[56, 88] and not red[104, 168] and not (green | red)[200, 200]
    # a MASK overrides the default region: a 2x2-token square around the handle
    m = torch.zeros(1, 256, 256)
    m[0, 48:80, 48:80] = 1.0
    sq = cd.ReverseMapping.execute(DRAGS, latent(3), mask=m).args[0]
    assert sq.src_mask.sum() == 4 and sq.dst_mask.sum() == 4
    with pytest.raises(FluxDragInputError, match="mask is empty"):
        cd.ReverseMapping.execute(DRAGS, latent(3), mask=torch.zeros(1, 256, 256))
    with pytest.raises(FluxDragInputError, match="multiple of 16"):
        cd.ReverseMapping.execute(DRAGS, {"samples": torch.zeros(1, 16, 31, 32)})


def test_inactive_patches_are_bitwise_stock_kontext(tiny_flux, tiny_cond):
    from fluxdrag.nodes import contextdrag as cd
    kc = _kontext(tiny_cond)
    stock = sample_plain(tiny_flux, kc, steps=2)
    assert not torch.equal(stock, sample_plain(tiny_flux, tiny_cond, steps=2))  # the reference matters
    rmap = _map()
    off = cd.ContextTokenInjectionNode.execute(tiny_flux, rmap, start=1.0, end=1.0).args[0]
    off = cd.PositionConsistentAttentionNode.execute(off, rmap, start=1.0, end=1.0).args[0]
    assert torch.equal(sample_plain(off, kc, steps=2), stock)
    noblocks = cd.ContextTokenInjectionNode.execute(tiny_flux, rmap, mode="append", double_blocks="none",
                                                    single_blocks="none").args[0]
    noblocks = cd.PositionConsistentAttentionNode.execute(noblocks, rmap, rewrite_ids=False,
                                                          hide="none", background_lock=0.0).args[0]
    assert torch.equal(sample_plain(noblocks, kc, steps=2), stock)
    on = cd.PositionConsistentAttentionNode.execute(
        cd.ContextTokenInjectionNode.execute(tiny_flux, rmap).args[0], rmap).args[0]
    assert not torch.equal(sample_plain(on, kc, steps=2), stock)


def test_pca_ids_seen_by_the_model(tiny_flux, tiny_cond):
    from fluxdrag.nodes import contextdrag as cd
    kc = _kontext(tiny_cond)
    m = cd.PositionConsistentAttentionNode.execute(tiny_flux, _map()).args[0].clone()
    seen = []
    m.set_model_post_input_patch(lambda d: seen.append(d["img_ids"].clone()) or d)  # runs after ours
    sample_plain(m, kc, steps=2)
    assert len(seen) == 2
    ids = seen[0][0]
    assert ids.shape == (2 * N_IMG, 3)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    grid = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1)
    expect_img = torch.cat([torch.zeros(N_IMG, 1), grid], 1)           # (0, row, col)
    expect_ref = torch.cat([torch.ones(N_IMG, 1), grid], 1)            # Kontext: (1, row, col)
    for q, s in SRC_OF.items():
        expect_ref[s, 1:] = torch.tensor([q // W, q % W], dtype=torch.float32)  # moved to q
    from fluxdrag.core.reverse_ids import hole_slots
    slots, holes = hole_slots(_map())
    assert slots.numel() == len(set(SRC) - set(DST)) > 0       # (hole_fill default) every hole gets a slot
    for o, v in zip(slots.tolist(), holes.tolist()):
        assert o in DST and o not in SRC_OF.values() and v in SRC and v not in DST
        expect_ref[o, 1:] = torch.tensor([v // W, v % W], dtype=torch.float32)   # a slot sits on its hole
    assert torch.equal(ids[:N_IMG], expect_img)
    assert torch.equal(ids[N_IMG:], expect_ref)
    assert torch.equal(seen[1], seen[0])
    # the window switches the rewrite off: Kontext's own ids come through
    seen.clear()
    late = cd.PositionConsistentAttentionNode.execute(tiny_flux, _map(), start=0.5).args[0].clone()
    late.set_model_post_input_patch(lambda d: seen.append(d["img_ids"].clone()) or d)
    sample_plain(late, kc, steps=2)
    assert torch.equal(seen[0][0, N_IMG:], torch.cat([torch.ones(N_IMG, 1), grid], 1))
    assert torch.equal(seen[1][0, N_IMG:], expect_ref)


@pytest.mark.parametrize("rewrite,hide,hide_from,hidden,rows", [
    (False, "vacated", "image", SRC, [(IMG0, REF0)]),             # ids kept: the whole source hidden
    (True, "vacated_overlap", "image", DST, [(IMG0, REF0)]),      # moved: hide what lies under them
    (False, "source", "image_text", SRC, [(IMG0, REF0), (0, N_TXT)]),
])
def test_pca_mask_blocks_exactly_the_intended_pairs(tiny_flux, tiny_cond, rewrite, hide, hide_from, hidden, rows):
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import contextdrag as cd
    m, ctrl = cd.apply_pca(tiny_flux, _map(), rewrite_ids=rewrite, hide=hide, hide_from=hide_from,
                           single_blocks="1", hole_fill="none")  # (a hidden overlap refuses the hole fill)
    rec = Recorder()
    sample_plain(patch_model(m, rec), _kontext(tiny_cond), steps=2)
    assert ctrl.hidden.tolist() == hidden
    expect = torch.zeros(N, N)
    for a, b in rows:
        for c in hidden:
            expect[a:b, REF0 + c] = -torch.inf
    blocks = [c["block"] for c in rec.calls]
    assert blocks == [("double", 0), ("double", 1), ("single", 0), ("single", 1)]
    for c in rec.calls:
        if c["block"] == ("single", 0):
            assert c["mask"] is None  # single block 0 not selected
        else:
            assert c["mask"].shape == (1, 1, N, N) and torch.equal(c["mask"][0, 0], expect)


def test_pca_vacated_hides_nothing_for_a_rigid_move(tiny_flux, tiny_cond):
    """With the rewrite, every vacated token is a source and sits at its destination: hide=vacated
    (the default since issue 28) is empty, no mask; vacated_overlap hides the tokens under the
    destination."""
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import contextdrag as cd
    m, ctrl = cd.apply_pca(tiny_flux, _map(), hide="vacated")
    rec = Recorder()
    with watch_runs() as runs:
        sample_plain(patch_model(m, rec), _kontext(tiny_cond), steps=2)
    assert ctrl.hidden.numel() == 0 and runs[-1].of(ctrl).active_calls == 0
    assert all(c["mask"] is None for c in rec.calls)
    assert cd.ContextDragSettings().hide == "vacated"
    m, ctrl = cd.apply_pca(tiny_flux, _map(), hide="vacated_overlap", hole_fill="none")
    rec = Recorder()
    with watch_runs() as runs:
        sample_plain(patch_model(m, rec), _kontext(tiny_cond), steps=2)
    assert ctrl.hidden.numel() > 0 and runs[-1].of(ctrl).active_calls > 0
    assert any(c["mask"] is not None for c in rec.calls)


def _unrotate(k, pe, pos):
    from fluxdrag.attention_patches.rope import pe_tokens, rope_unrotate
    return rope_unrotate(k.index_select(2, pos), pe_tokens(pe, pos))


def test_cti_replace_puts_the_source_tokens_at_the_destinations(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import contextdrag as cd
    before, after = Recorder(), Recorder()
    m, ctrl = cd.apply_cti(patch_model(tiny_flux, before), _map(), mode="replace", double_blocks="1")
    spec = {k: id(v) for k, v in vars(ctrl).items()}
    with watch_runs() as runs:
        sample_plain(patch_model(m, after), _kontext(tiny_cond), steps=2)
    assert runs[-1].of(ctrl).active_calls == 2 * 3  # 2 steps x (double 1 + single 0, 1)
    assert {k: id(v) for k, v in vars(ctrl).items()} == spec   # the run kept its state to itself
    dst = torch.tensor([IMG0 + q for q in SRC_OF])
    src = torch.tensor([REF0 + s for s in SRC_OF.values()])
    rest = torch.tensor([i for i in range(N) if i not in set(dst.tolist())])
    for b, a in zip(before.calls, after.calls):
        assert b["block"] == a["block"]
        if a["block"] == ("double", 0):
            assert torch.equal(a["k"], b["k"]) and torch.equal(a["v"], b["v"])
            continue
        assert torch.equal(a["v"][:, :, dst], b["v"][:, :, src])  # V copied as is
        assert torch.equal(a["v"][:, :, rest], b["v"][:, :, rest])
        assert torch.equal(a["k"][:, :, rest], b["k"][:, :, rest])
        # K: the reference key, un-rotated at its own position, rotated at the image token q
        assert torch.allclose(_unrotate(a["k"], a["pe"], dst), _unrotate(b["k"], b["pe"], src), atol=1e-5)
        assert not torch.allclose(a["k"][:, :, dst], b["k"][:, :, src], atol=1e-3)  # really re-encoded
        assert a["mask"] is None


def test_cti_append_and_either_order_with_pca(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import contextdrag as cd
    kc = _kontext(tiny_cond)
    before, after = Recorder(), Recorder()
    m, _ = cd.apply_cti(patch_model(tiny_flux, before), _map(), mode="append")
    out_cti = sample_plain(patch_model(m, after), kc, steps=2)
    dst = torch.tensor([IMG0 + q for q in SRC_OF])
    src = torch.tensor([REF0 + s for s in SRC_OF.values()])
    n_x = len(SRC_OF)
    for b, a in zip(before.calls, after.calls):
        assert a["n_k"] == N + n_x
        assert torch.equal(a["k"][:, :, :N], b["k"]) and torch.equal(a["v"][:, :, :N], b["v"])
        assert torch.equal(a["v"][:, :, N:], b["v"][:, :, src])
        from fluxdrag.attention_patches.rope import pe_tokens, rope_unrotate
        extra_k = rope_unrotate(a["k"][:, :, N:], pe_tokens(b["pe"], dst))  # re-encoded at q
        assert torch.allclose(extra_k, _unrotate(b["k"], b["pe"], src), atol=1e-5)
        mask = a["mask"][0, 0]
        assert mask.shape == (N, N + n_x) and torch.equal(mask[:, :N], torch.zeros(N, N))
        assert torch.equal(mask[IMG0:REF0, N:], torch.zeros(N_IMG, n_x))          # image queries see them
        assert torch.isinf(mask[:IMG0, N:]).all() and torch.isinf(mask[REF0:, N:]).all()
    # CTI(append) then PCA, or PCA then CTI(append): same final keys, mask and result
    rmap = _map()
    outs, masks = [], []
    for order in ("cti_pca", "pca_cti"):
        m = tiny_flux
        for step in order.split("_"):
            if step == "cti":
                m, _ = cd.apply_cti(m, rmap, mode="append")
            else:
                m, _ = cd.apply_pca(m, rmap, rewrite_ids=False)
        rec = Recorder()
        outs.append(sample_plain(patch_model(m, rec), kc, steps=2))
        masks.append([c["mask"] for c in rec.calls])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], out_cti)
    for x, y in zip(*masks):
        assert torch.equal(x, y)
        assert torch.isinf(x[0, 0, IMG0:REF0, REF0 + SRC[0]]).all()  # PCA's hidden column
        assert torch.equal(x[0, 0, IMG0:REF0, N:], torch.zeros(N_IMG, n_x))  # CTI's extras open


def test_shared_model_untouched(tiny_flux, tiny_cond):
    from fluxdrag.nodes import contextdrag as cd
    before = repr(tiny_flux.model_options)
    kc = _kontext(tiny_cond)
    stock = sample_plain(tiny_flux, kc, steps=2)
    m = cd.ContextTokenInjectionNode.execute(tiny_flux, _map()).args[0]
    m = cd.PositionConsistentAttentionNode.execute(m, _map()).args[0]
    assert m is not tiny_flux
    sample_plain(m, kc, steps=2)
    assert repr(tiny_flux.model_options) == before
    assert torch.equal(sample_plain(tiny_flux, kc, steps=2), stock)


def test_clear_errors(tiny_flux, tiny_cond):
    import comfy.sample

    from fluxdrag.attention_patches.contextdrag import ContextDragError
    from fluxdrag.nodes import contextdrag as cd
    from fluxdrag.nodes.common import FluxDragInputError
    from tools import comfy_env
    rmap = _map()
    patched = cd.PositionConsistentAttentionNode.execute(tiny_flux, rmap).args[0]
    with pytest.raises(ContextDragError, match="add ComfyUI's ReferenceLatent|Add ComfyUI's ReferenceLatent"):
        sample_plain(patched, tiny_cond)  # no reference latent
    cti = cd.ContextTokenInjectionNode.execute(tiny_flux, rmap).args[0]
    with pytest.raises(ContextDragError, match="Reverse Mapping from the same latent"):
        sample_plain(cti, _kontext(tiny_cond, h=48, w=48))  # map from a 16x16, reference 24x24
    with pytest.raises(ContextDragError, match="EmptySD3LatentImage"):
        sample_plain(cti, _kontext(tiny_cond), h=48, w=48)  # reference right, sampled latent not
    with pytest.raises(ContextDragError, match="reference_index 1"):
        sample_plain(cd.ContextTokenInjectionNode.execute(tiny_flux, rmap, reference_index=1).args[0],
                     _kontext(tiny_cond))
    # CFG > 1 with a negative prompt without the reference: the uncond calls run unchanged
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 16, 32, 32, generator=g)
    out = comfy.sample.sample(cti, noise, 2, 2.0, "euler", "simple", _kontext(tiny_cond), tiny_cond,
                              torch.zeros(1, 16, 32, 32), seed=1, disable_pbar=True)
    assert torch.isfinite(out).all()
    # node time: not FLUX, a FLUX.1 with extra input channels (Fill-like), a wrong map, bad blocks
    with pytest.raises(FluxDragInputError, match="needs a FLUX model"):
        cd.ContextTokenInjectionNode.execute(comfy_env.build_sd15(), rmap)
    with pytest.raises(FluxDragInputError, match="Fill/Canny/Depth"):
        cd.PositionConsistentAttentionNode.execute(comfy_env.build_flux({"in_channels": 32}), rmap)
    with pytest.raises(FluxDragInputError, match="must come from FluxDrag Reverse Mapping"):
        cd.ContextTokenInjectionNode.execute(tiny_flux, {"pairs": []})
    with pytest.raises(FluxDragInputError, match=r"single_blocks: indices \[2\] are outside 0..1"):
        cd.PositionConsistentAttentionNode.execute(tiny_flux, rmap, single_blocks="0-2")
    with pytest.raises(FluxDragInputError, match="start"):
        cd.ContextTokenInjectionNode.execute(tiny_flux, rmap, start=0.9, end=0.1)


def test_a_batch_of_references_is_reported(comfy, caplog):
    """A reference latent batch of 2 edits with one map and yields as many images as the sampler's
    empty latent: said as a warning (was silent), by the pipeline and through the node."""
    from fluxdrag.nodes import contextdrag as cd
    from fluxdrag.pipelines.contextdrag import build_map

    two = {"samples": torch.cat([latent(3)["samples"], latent(4)["samples"]])}
    with pytest.warns(UserWarning, match="input 'latent' has a batch of 2"):
        build_map(DRAGS, two["samples"])
    with caplog.at_level("WARNING", logger="FluxDrag"):
        cd.ReverseMapping.execute(DRAGS, two)
    assert any("FluxDrag Reverse Mapping: input 'latent' has a batch of 2" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level("WARNING", logger="FluxDrag"):
        cd.ReverseMapping.execute(DRAGS, latent(3))
    assert not [r for r in caplog.records if "batch" in r.getMessage()]
