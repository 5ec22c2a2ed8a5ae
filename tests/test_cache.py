"""Token cache: selection, policies, bytes, budget, freeing."""
import pytest
import torch

from fluxdrag.core.cache import (
    CacheBudgetError,
    CacheFreedError,
    TokenCache,
    bytes_per_element,
    format_bytes,
    sigma_key,
)


def qkv(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2, n, 4, generator=g)


def test_stores_only_requested_tokens_and_reports_bytes():
    c = TokenCache("device")
    t = qkv()
    idx = torch.tensor([1, 4, 7])
    c.put(3, ("single", 0), "k", t, index=idx)
    got = c.get(3, ("single", 0), "k")
    assert torch.equal(got, t[:, :, idx])
    assert c.nbytes == 1 * 2 * 3 * 4 * 4
    c.put(3, ("single", 0), "k", t, index=idx)  # overwrite keeps the count honest
    assert c.nbytes == 96 and len(c) == 1


def test_cpu_policy_copies_and_roundtrips():
    c = TokenCache("cpu", pin_memory=False)
    t = qkv().to(torch.bfloat16)
    c.put(0, "b", "v", t)
    t.zero_()  # the cache holds its own copy
    assert c.get(0, "b", "v").abs().sum() > 0
    assert c.get(0, "b", "v").dtype == torch.bfloat16
    assert c.get(0, "b", "v", dtype=torch.float32).dtype == torch.float32


def test_fp8_policy_is_one_byte_per_element_and_close():
    c = TokenCache("fp8", pin_memory=False)
    t = qkv(64) * 3
    c.put(0, "b", "q", t)
    assert c.nbytes == t.numel()  # 1 byte each
    back = c.get(0, "b", "q")
    rel = (back - t).abs().max() / t.abs().max()
    assert rel < 0.07  # e4m3 has a 3-bit mantissa: ≤ 1/16 relative step
    assert bytes_per_element("fp8") == 1 and bytes_per_element("cpu", torch.bfloat16) == 2


def test_budget_refuses_with_need_and_budget_named():
    c = TokenCache("device", budget_bytes=100)
    with pytest.raises(CacheBudgetError, match=r"estimated need 1\.0 KiB exceeds the budget 100 B"):
        c.reserve(1024)
    c.put(0, "b", "k", torch.zeros(5, 4))  # 80 bytes fits
    with pytest.raises(CacheBudgetError, match="over the budget"):
        c.put(1, "b", "k", torch.zeros(5, 4))
    assert c.nbytes == 80


def test_free_and_errors():
    c = TokenCache("device")
    c.put(0, "b", "k", torch.ones(3))
    c.meta[(0, "b", "n_txt")] = 4
    c.free()
    assert c.nbytes == 0 and len(c) == 0 and c.freed and c.steps() == [] and c.meta == {}
    c.free()  # idempotent
    assert not hasattr(TokenCache, "free_count")  # no process-wide counter (issue 25)
    with pytest.raises(CacheFreedError, match="run the inversion again"):
        c.get(0, "b", "k")
    with pytest.raises(ValueError, match="unknown cache policy"):
        TokenCache("disk")


def test_missing_entry_message_and_helpers():
    c = TokenCache("device")
    with pytest.raises(KeyError, match="no entry 'k' for block b at step 5"):
        c.get(5, "b", "k")
    assert sigma_key(0.5) == 500000 and sigma_key(0.5 + 1e-9) == 500000
    assert format_bytes(3 * 1024 ** 3) == "3.0 GiB"


def test_steps_are_sorted_and_follow_puts():
    c = TokenCache("device")
    for step in (500, 100, 900, 100):
        c.put(step, "b", "k", torch.ones(2))
    assert c.steps() == [100, 500, 900]
    c.put(300, "b2", "v", torch.ones(2))
    assert c.steps() == [100, 300, 500, 900]
