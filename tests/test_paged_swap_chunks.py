"""PagedKVCache for the serving engine: per-row token caps (prefill chunks) and swapping a sequence to
host memory and back.

A prompt prefilled in chunks gives the logits one whole prefill gives (and, after each chunk, the
logits after its last computed token); a swapped-out sequence comes back with K/V that reproduce
its next logits exactly, and a swap-in that does not fit raises OutOfBlocks and changes nothing.
"""

from __future__ import annotations

import pytest
import torch
from serve_helpers import shipped_model, text_slice

from kvlib.paged.blocks import OutOfBlocks
from kvlib.paged.cache import PagedKVCache, SwappedSequence

pytestmark = [pytest.mark.ch06, pytest.mark.ch08, pytest.mark.usefixtures("one_torch_thread")]

GQA = "shakespeare-gqa"  # 8 query heads share 2 K/V heads: the swapped rows are (tokens, 2, head_dim)


def _cache(num_blocks: int = 64, block_size: int = 4, name: str = GQA, **options) -> PagedKVCache:
    return PagedKVCache.for_model(shipped_model(name), num_blocks, block_size, **options)


def _dense_logits(prompt: list[int], name: str = GQA) -> torch.Tensor:
    """Next-token logits after every position of ``prompt``, from one uncached forward: [T, V]."""
    with torch.no_grad():
        return shipped_model(name)(torch.tensor([prompt]))[0]


def _state(cache: PagedKVCache) -> tuple:
    """What a refused call must leave as it was (block bookkeeping, computed counts, counters)."""
    computed = tuple(sorted((s, cache.num_computed(s)) for s in cache.manager.seqs))
    return cache.manager.snapshot(), computed, cache.tokens_computed, cache.token_slots, cache.bytes_swapped


def _decode(cache: PagedKVCache, seq_id: int, first_token: int, n: int, name: str = GQA):
    """Append ``first_token``, then decode greedily; returns the tokens fed and every step's logits."""
    tokens, logits, token = [], [], first_token
    for _ in range(n):
        cache.append_token(seq_id, token)
        tokens.append(token)
        logits.append(cache.step(shipped_model(name), [seq_id])[0])
        token = int(logits[-1].argmax())
    return tokens, torch.stack(logits)


# --- prefill in chunks ------------------------------------------------------------------------------

PROMPTS = (37, 5, 20)  # prompt lengths: several chunks, one chunk, chunks ending on block boundaries


@pytest.mark.parametrize("block_size", [4, 16])
@pytest.mark.parametrize("caps", [(8, 2, 4), (3, 5, 16), (1, 1, 7)])
@pytest.mark.parametrize("name", ["shakespeare-mha", GQA])
def test_chunked_prefill_equals_one_whole_prefill(name, caps, block_size) -> None:
    model = shipped_model(name)
    prompts = [text_slice(7000 * i + 3, n) for i, n in enumerate(PROMPTS)]
    whole = _cache(64, block_size, name)
    chunked = _cache(64, block_size, name)
    for seq_id, prompt in enumerate(prompts):
        whole.add_sequence(seq_id, prompt)
        chunked.add_sequence(seq_id, prompt)
    whole_logits = whole.step(model, [0, 1, 2])
    final = {}
    while len(final) < len(prompts):
        rows = [s for s in range(len(prompts)) if s not in final]  # a finished row has nothing to run
        before = [chunked.num_computed(s) for s in rows]
        logits = chunked.step(model, rows, [caps[s] for s in rows])
        for row, (seq_id, done) in enumerate(zip(rows, before)):
            prompt = prompts[seq_id]
            now = min(done + caps[seq_id], len(prompt))
            assert chunked.num_computed(seq_id) == now
            # the row's logits follow its last computed token
            torch.testing.assert_close(logits[row], _dense_logits(prompt, name)[now - 1], rtol=0, atol=1e-4)
            if now == len(prompt):
                final[seq_id] = logits[row]
    assert chunked.tokens_computed == whole.tokens_computed == sum(PROMPTS)
    for seq_id in range(len(prompts)):
        torch.testing.assert_close(final[seq_id], whole_logits[seq_id], rtol=0, atol=1e-4)
        first = int(whole_logits[seq_id].argmax())
        assert int(final[seq_id].argmax()) == first
        tokens, whole_next = _decode(whole, seq_id, first, 6, name)
        chunked_tokens, chunked_next = _decode(chunked, seq_id, first, 6, name)
        assert chunked_tokens == tokens
        torch.testing.assert_close(chunked_next, whole_next, rtol=0, atol=1e-4)


def test_a_cap_past_the_prompt_end_takes_what_is_left() -> None:
    cache = _cache()
    prompt = text_slice(500, 6)
    cache.add_sequence(0, prompt)
    last = cache.step(shipped_model(GQA), [0], [100])
    assert cache.num_computed(0) == 6
    torch.testing.assert_close(last[0], _dense_logits(prompt)[-1], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("caps", "error"),
    [
        ([3], ValueError),  # one cap for two rows
        ([3, 3, 3], ValueError),
        ([0, 3], ValueError),
        ([3, -1], ValueError),
        ([3, "3"], TypeError),
        ([3, 2.0], TypeError),
        ([True, 3], TypeError),
        ("33", TypeError),
        (3, TypeError),
    ],
)
def test_bad_token_caps_are_refused_and_change_nothing(caps, error) -> None:
    cache = _cache()
    cache.add_sequence(0, text_slice(500, 9))
    cache.add_sequence(1, text_slice(900, 5))
    cache.step(shipped_model(GQA), [0], [4])
    before = _state(cache)
    with pytest.raises(error, match="num_tokens"):
        cache.prepare([0, 1], caps)
    with pytest.raises(error, match="num_tokens"):
        cache.step(shipped_model(GQA), [0, 1], caps)
    assert _state(cache) == before
    cache.step(shipped_model(GQA), [0, 1], [2, 5])  # the cache still works
    assert (cache.num_computed(0), cache.num_computed(1)) == (6, 5)


# --- swap out and in --------------------------------------------------------------------------------


def _prefilled(cache: PagedKVCache, seq_id: int, prompt: list[int], decoded: int) -> int:
    """Prefill ``prompt`` and decode ``decoded`` tokens; returns the next token (not yet appended)."""
    cache.add_sequence(seq_id, prompt)
    token = int(cache.step(shipped_model(GQA), [seq_id])[0].argmax())
    for _ in range(decoded):
        cache.append_token(seq_id, token)
        token = int(cache.step(shipped_model(GQA), [seq_id])[0].argmax())
    return token


@pytest.mark.parametrize(
    ("prompt_len", "decoded"),
    [(13, 2), (14, 2), (16, 0), (1, 0), (30, 7)],  # (14, 2) and (16, 0): the pending token opens a new block
)
def test_swap_round_trip_gives_identical_next_logits(prompt_len, decoded) -> None:
    prompt = text_slice(1500, prompt_len)
    control, swapping = _cache(), _cache()
    token = _prefilled(control, 0, prompt, decoded)
    assert _prefilled(swapping, 0, prompt, decoded) == token
    swapping.add_sequence(1, text_slice(3000, 10))  # another sequence keeps its blocks meanwhile
    held = len(swapping.manager.block_table(0))
    used = swapping.manager.num_used_blocks
    swapped = swapping.swap_out(0)
    assert isinstance(swapped, SwappedSequence)
    assert swapped.tokens == control.tokens(0) and swapped.num_computed == len(swapped.tokens)
    assert swapping.manager.num_used_blocks == used - held and 0 not in swapping.manager.seqs
    config = shipped_model(GQA).config
    rows = (len(swapped.tokens), config.num_kv_heads, config.head_dim)
    assert [k.shape for k in swapped.keys] == [v.shape for v in swapped.values] == [rows] * config.num_layers
    swapping.step(shipped_model(GQA), [1])  # the pool moves on without it
    swapping.swap_in(0, swapped, token)
    assert swapping.tokens(0) == control.tokens(0) + [token]
    assert swapping.num_computed(0) == len(swapped.tokens)
    expected_tokens, expected = _decode(control, 0, token, 6)
    logits = [swapping.step(shipped_model(GQA), [0])[0]]
    for t in expected_tokens[1:]:
        swapping.append_token(0, t)
        logits.append(swapping.step(shipped_model(GQA), [0])[0])
    assert torch.equal(torch.stack(logits), expected)  # the same K/V, bit for bit
    swapping.manager.check_invariants()


def test_swap_out_keeps_an_appended_token_without_keys() -> None:
    """A sequence swapped after append_token: its last token has no K/V yet and is computed after the
    swap-in."""
    prompt = text_slice(1700, 11)
    control, swapping = _cache(), _cache()
    token = _prefilled(control, 0, prompt, 1)
    _prefilled(swapping, 0, prompt, 1)
    swapping.append_token(0, token)
    swapped = swapping.swap_out(0)
    assert swapped.tokens[-1] == token and swapped.num_computed == len(swapped.tokens) - 1
    swapping.swap_in(0, swapped)
    control.append_token(0, token)
    assert torch.equal(swapping.step(shipped_model(GQA), [0]), control.step(shipped_model(GQA), [0]))


def test_bytes_swapped_counts_both_directions() -> None:
    cache = _cache()
    token = _prefilled(cache, 0, text_slice(1900, 10), 3)
    swapped = cache.swap_out(0)
    config = shipped_model(GQA).config
    one_way = 13 * config.num_layers * 2 * config.num_kv_heads * config.head_dim * 4  # K and V, float32
    assert swapped.nbytes == cache.bytes_swapped == one_way
    cache.swap_in(0, swapped, token)
    assert cache.bytes_swapped == 2 * one_way


def _fill_pool_but(cache: PagedKVCache, free: int, seq_id: int = 9) -> None:
    """Admit a sequence that leaves exactly ``free`` blocks obtainable."""
    obtainable = cache.manager.num_available_blocks
    cache.add_sequence(seq_id, text_slice(40_000 + 1000 * seq_id, (obtainable - free) * cache.block_size))
    assert cache.manager.num_available_blocks == free


@pytest.mark.parametrize("prefix_cache", [None, "radix"])
def test_a_swap_in_that_does_not_fit_raises_and_changes_nothing(prefix_cache) -> None:
    cache = _cache(12, 4, prefix_cache=prefix_cache)
    token = _prefilled(cache, 0, text_slice(2100, 12), 0)  # 12 tokens: three full blocks
    swapped = cache.swap_out(0)
    if prefix_cache:
        cache.manager.reclaim(cache.manager.cache.num_evictable)  # no hit on its old blocks
    _fill_pool_but(cache, 2)
    before = _state(cache)
    for pending in (None, token):
        with pytest.raises(OutOfBlocks):
            cache.swap_in(0, swapped, pending)
        assert _state(cache) == before
    cache.free(9)
    _fill_pool_but(cache, 3, seq_id=10)  # other tokens: no prefix hit on the freed sequence
    before = _state(cache)
    with pytest.raises(OutOfBlocks):  # three blocks hold the tokens, the pending one needs a fourth
        cache.swap_in(0, swapped, token)
    assert _state(cache) == before
    cache.swap_in(0, swapped)  # without the pending token it fits
    assert cache.manager.num_available_blocks == 0 and cache.num_computed(0) == 12
    cache.manager.check_invariants()


def test_a_swap_in_with_a_pending_token_that_needs_a_new_block() -> None:
    prompt = text_slice(2100, 12)
    control, cache = _cache(), _cache(12, 4)
    token = _prefilled(control, 0, prompt, 0)
    _prefilled(cache, 0, prompt, 0)
    swapped = cache.swap_out(0)
    _fill_pool_but(cache, 4)
    cache.swap_in(0, swapped, token)
    assert len(cache.manager.block_table(0)) == 4 and cache.manager.num_available_blocks == 0
    control.append_token(0, token)
    assert torch.equal(cache.step(shipped_model(GQA), [0]), control.step(shipped_model(GQA), [0]))


@pytest.mark.parametrize("other_ran", [True, False])
def test_a_swap_in_reuses_a_cached_prefix(other_ran) -> None:
    """While A is swapped out, B is admitted with A's first 16 tokens as its prefix; A comes back
    sharing B's blocks (whose K/V B computed, or not yet: then A's copy fills them)."""
    prompt = text_slice(2300, 18)
    control, cache = _cache(prefix_cache="radix"), _cache(prefix_cache="radix")
    token = _prefilled(control, 0, prompt, 3)
    _prefilled(cache, 0, prompt, 3)
    swapped = cache.swap_out(0)
    cache.manager.reclaim(cache.manager.cache.num_evictable)  # A's old blocks are gone
    other = prompt[:16] + text_slice(9000, 5)
    cache.add_sequence(1, other)
    if other_ran:
        cache.step(shipped_model(GQA), [1])
    used = cache.manager.num_used_blocks
    cache.swap_in(0, swapped, token)
    a, b = cache.manager.block_table(0), cache.manager.block_table(1)
    assert a[:4] == b[:4] and len(set(a) | set(b)) == len(a) + len(b) - 4  # four blocks shared
    assert cache.manager.num_used_blocks == used + len(a) - 4
    cache.manager.check_invariants()
    control.append_token(0, token)
    expected = control.step(shipped_model(GQA), [0])[0]
    torch.testing.assert_close(cache.step(shipped_model(GQA), [0])[0], expected, rtol=0, atol=1e-4)
    if not other_ran:  # B still computes its own tokens and reads the prefix A's copy filled
        torch.testing.assert_close(
            cache.step(shipped_model(GQA), [1])[0], _dense_logits(other)[-1], rtol=0, atol=1e-4
        )


def test_bytes_swapped_counts_only_rows_copied_back_after_a_prefix_hit() -> None:
    prompt = text_slice(2300, 18)
    cache = _cache(prefix_cache="radix")
    token = _prefilled(cache, 0, prompt, 3)
    swapped = cache.swap_out(0)
    cache.manager.reclaim(cache.manager.cache.num_evictable)
    cache.add_sequence(1, prompt[:16] + text_slice(9000, 5))
    cache.step(shipped_model(GQA), [1])  # fills the four shared blocks
    cache.swap_in(0, swapped, token)
    per_token = swapped.nbytes // swapped.num_computed
    assert cache.bytes_swapped == swapped.nbytes + (swapped.num_computed - 16) * per_token


def test_swap_arguments_are_checked_before_any_change() -> None:
    cache = _cache()
    token = _prefilled(cache, 0, text_slice(2500, 9), 1)
    cache.add_sequence(1, text_slice(2700, 4))
    swapped = cache.swap_out(0)
    before = _state(cache)
    with pytest.raises(KeyError, match="7"):
        cache.swap_out(7)
    with pytest.raises(TypeError, match="swapped"):
        cache.swap_in(0, {"tokens": swapped.tokens}, token)
    with pytest.raises(ValueError, match="already exists"):
        cache.swap_in(1, swapped, token)
    assert _state(cache) == before
    cache.swap_in(0, swapped, token)
    assert cache.tokens(0)[-1] == token


@pytest.mark.parametrize("pending", [-1, "5"])
def test_a_bad_pending_token_changes_nothing(pending) -> None:
    cache = _cache()
    _prefilled(cache, 0, text_slice(2500, 9), 1)
    swapped = cache.swap_out(0)
    before = _state(cache)
    with pytest.raises((TypeError, ValueError)):
        cache.swap_in(0, swapped, pending)
    assert _state(cache) == before
