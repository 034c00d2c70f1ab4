"""Chapter 05's window_cache checks, beyond what tests/test_checks.py runs.

The hidden scenarios are held to the docstring's edge cases (a call longer than the window and one exactly
as long, window 1, a stream that never fills the window, six layers, fp16/bf16, non-contiguous inputs,
batch > 1, a model stream longer than the window but inside the context); kvlib's own SlidingWindowKVCache
passes the checks (the grader agrees with the reference); the detector of writes that send two values to
one slot is tested on every write form it reads, without false alarms; and the messages of mistakes that
no mutant in autograder/mutants/ reaches are checked for their wording.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch05 import window
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch05, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "05_eviction.ipynb"


def _edited(*edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, "window_cache", *edits)


def _message(source: str) -> str:
    return failure_message(NOTEBOOK, "window_cache", source)


# --- the scenarios reach the docstring's edge cases ---------------------------------------------------


def test_hidden_scenarios_cover_the_edge_cases() -> None:
    scenarios = [(window._VISIBLE, window._VISIBLE_STEPS), *window._HIDDEN]
    longer = [(c, s) for c, s in scenarios if any(n > c.window for n in s[1:])]
    assert longer, "a call longer than the window after the first one"
    assert any(s[0] > c.window for c, s in scenarios), "a prompt longer than the window"
    assert any(c.window in s for c, s in scenarios), "a call exactly as long as the window"
    assert any(c.window == 1 for c, _ in scenarios)
    assert any(sum(s) < c.window for c, s in scenarios), "a stream that never fills the window"
    assert any(c.num_layers >= 6 for c, _ in scenarios), "many layers: one count per layer"
    assert {torch.float16, torch.bfloat16} <= {c.dtype for c, _ in scenarios}
    assert any(c.transposed for c, _ in scenarios), "non-contiguous inputs, as a model hands them over"
    assert all(c.B > 1 for c, _ in scenarios if c == window._VISIBLE)
    assert any(c.B > 2 and c.D >= 64 and sum(s) > 128 for c, s in scenarios), "past the visible sizes"
    # the stream wraps the ring several times in most scenarios
    assert sum(sum(s) > 2 * c.window for c, s in scenarios) >= 5
    steps, win = window._VISIBLE_MODEL
    assert sum(steps) > win and any(n > win for n in steps)


def test_model_streams_stay_inside_the_context_and_pass_the_window() -> None:
    model = window.tiny_model(num_heads=4, num_kv_heads=2, num_layers=3, max_seq_len=64)
    assert model.config.num_heads != model.config.num_kv_heads
    for steps, win in (window._VISIBLE_MODEL, ([13, 1, 1, 1, 11, 1, 1, 8, 1, 2, 1, 16], 8)):
        assert 2 * win < sum(steps) <= model.config.max_seq_len


def test_kvlib_reference_passes_the_checks() -> None:
    """The grader agrees with kvlib: SlidingWindowKVCache passes the undecorated checks."""
    from kvlib.cache.evict import SlidingWindowKVCache

    window.window_cache_visible.__wrapped__(SlidingWindowKVCache)
    window.window_cache_hidden.__wrapped__(SlidingWindowKVCache)


def test_delegation_names_resolve() -> None:
    from autograder.checks.delegation import reference_codes

    found = set(reference_codes(window.REFERENCES).values())
    for name in window.REFERENCES:
        assert any(f.startswith(name) for f in found), name


# --- the detector of repeated writes --------------------------------------------------------------------


def _flags(write) -> bool:
    watch = window._DuplicateWrites()
    with watch:
        write()
    return watch.found


@pytest.mark.parametrize(
    "write",
    [
        lambda b, x: b.__setitem__((slice(None), slice(None), torch.tensor([0, 1, 0])), x[:, :, :3]),
        lambda b, x: b.__setitem__((slice(None), slice(None), [2, 3, 2]), x[:, :, :3]),
        lambda b, x: b.__setitem__((Ellipsis, torch.tensor([1, -3]), slice(None)), x[:, :, :2]),  # -3 is 1
        lambda b, x: b.index_put_(
            (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 2])), x[0, 0, :2]
        ),
        lambda b, x: b.index_copy_(2, torch.tensor([3, 0, 3]), x[:, :, :3]),
        lambda b, x: b.scatter_(2, torch.tensor([0, 1, 0]).view(1, 1, 3, 1).expand(2, 2, 3, 3), x[:, :, :3]),
    ],
)
def test_repeated_writes_are_flagged(write) -> None:
    buffer, x = torch.zeros(2, 2, 4, 3), torch.randn(2, 2, 6, 3)
    assert _flags(lambda: write(buffer, x))


@pytest.mark.parametrize(
    "write",
    [
        lambda b, x: b.__setitem__((slice(None), slice(None), torch.tensor([3, 0, 1])), x[:, :, :3]),
        lambda b, x: b.__setitem__((slice(None), slice(None), slice(0, 3)), x[:, :, :3]),
        lambda b, x: b.__setitem__((0, 1, 2), 5.0),
        lambda b, x: b.__setitem__(b > 0, 1.0),
        lambda b, x: b.index_put_((torch.tensor([0, 0]),), x[:1, :, :4].expand(2, 2, 4, 3), accumulate=True),
        lambda b, x: b.index_copy_(2, torch.tensor([2, 3]), x[:, :, :2]),
        lambda b, x: b.scatter_(2, torch.tensor([0, 1, 2]).view(1, 1, 3, 1).expand(2, 2, 3, 3), x[:, :, :3]),
        lambda b, x: b[:, :, torch.tensor([0, 0])],  # a read may repeat a slot
    ],
)
def test_distinct_writes_and_reads_are_not_flagged(write) -> None:
    buffer, x = torch.zeros(2, 2, 4, 3), torch.randn(2, 2, 6, 3)
    assert not _flags(lambda: write(buffer, x))


# --- mistakes no mutant reaches: their messages ---------------------------------------------------------


def test_keys_and_values_swapped() -> None:
    message = _message(_edited(("return k_all, v_all", "return v_all, k_all")))
    assert "keys and values are swapped" in message


def test_result_not_a_pair() -> None:
    message = _message(_edited(("return k_all, v_all", "return torch.stack([k_all, v_all])")))
    assert "must return a pair (k_all, v_all)" in message


def test_seq_len_as_a_method() -> None:
    message = _message(_edited(("    @property\n", "")))
    assert "must be a property" in message


def test_batch_rows_mixed() -> None:
    message = _message(_edited(("return k_all, v_all", "return k_all.flip(0), v_all.flip(0)")))
    assert "wrong batch rows" in message


def test_window_plus_one() -> None:
    message = _message(
        _edited(
            ("W, seen = self.window, self.seen[layer]", "W, seen = self.window + 1, self.seen[layer]"),
        )
    )
    assert "6 slots, not window = 5 (off by one)" in message


def test_first_tokens_kept_forever() -> None:
    source = _edited(
        ("last = min(T, W)  # only the last W new tokens can survive\n",
         "last = max(0, min(T, W - seen))  # room left\n"),
        ("new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W",
         "new_slots = torch.arange(seen, seen + last, device=k.device)"),
        ("self.keys[layer][:, :, new_slots] = k[:, :, T - last :]",
         "self.keys[layer][:, :, new_slots] = k[:, :, :last]"),
        ("self.values[layer][:, :, new_slots] = v[:, :, T - last :]",
         "self.values[layer][:, :, new_slots] = v[:, :, :last]"),
    )  # fmt: skip
    assert "key buffer is wrong: the cache keeps the first window tokens and never evicts them" in _message(
        source
    )


def test_long_call_keeps_its_first_tokens() -> None:
    source = _edited(
        ("new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W",
         "new_slots = torch.arange(seen, seen + last, device=k.device) % W"),
        ("self.keys[layer][:, :, new_slots] = k[:, :, T - last :]",
         "self.keys[layer][:, :, new_slots] = k[:, :, :last]"),
        ("self.values[layer][:, :, new_slots] = v[:, :, T - last :]",
         "self.values[layer][:, :, new_slots] = v[:, :, :last]"),
    )  # fmt: skip
    assert "key buffer is wrong: a call longer than the window kept its FIRST window tokens" in _message(
        source
    )


def test_new_tokens_first() -> None:
    source = _edited(
        ("k_all = torch.cat([self.keys[layer][:, :, old_slots], k], dim=2)",
         "k_all = torch.cat([k, self.keys[layer][:, :, old_slots]], dim=2)"),
        ("v_all = torch.cat([self.values[layer][:, :, old_slots], v], dim=2)",
         "v_all = torch.cat([v, self.values[layer][:, :, old_slots]], dim=2)"),
    )  # fmt: skip
    assert "new tokens must come after the kept ones" in _message(source)


def test_slots_shifted_by_one() -> None:
    """Right results, wrong layout: token p in slot (p + 1) % window."""
    source = _edited(
        ("old_slots = torch.arange(seen - kept, seen, device=k.device) % W",
         "old_slots = (torch.arange(seen - kept, seen, device=k.device) + 1) % W"),
        ("new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W",
         "new_slots = (torch.arange(seen + T - last, seen + T, device=k.device) + 1) % W"),
    )  # fmt: skip
    message = _message(source)
    assert "slot 0 of the key buffer should hold token 0, but holds" in message
    assert "goes to slot p % window" in message


def test_buffers_reallocated_each_update() -> None:
    """Right layout, but a new tensor at every update: not written in place."""
    source = _edited(
        ("        kept = min(seen, W)\n",
         "        self.keys[layer] = self.keys[layer].clone()\n"
         "        self.values[layer] = self.values[layer].clone()\n"
         "        kept = min(seen, W)\n"),
    )  # fmt: skip
    message = _message(source)
    assert "not the ones allocated at its first update" in message
    assert "in place" in message


def test_buffer_is_the_callers_tensor() -> None:
    """A call of exactly `window` tokens taken as the buffer itself: the caller's k changes later."""
    source = _edited(
        ("        if self.keys[layer] is None:\n",
         "        if self.keys[layer] is None and T == W:  # already the right shape: keep it\n"
         "            self.keys[layer], self.values[layer] = k, v\n"
         "            self.seen[layer] = T\n"
         "            return k.clone(), v.clone()\n"
         "        if self.keys[layer] is None:\n"),
    )  # fmt: skip
    assert "a k or v tensor the caller passed to an EARLIER update changed" in _message(source)


def test_float32_buffers_cast_on_write() -> None:
    """Buffers in float32 written with a cast: the results come back in float32."""
    source = _edited(
        ("self.keys[layer] = k.new_zeros(B, kv_heads, W, D)",
         "self.keys[layer] = k.new_zeros(B, kv_heads, W, D).float()"),
        ("self.values[layer] = v.new_zeros(B, kv_heads, W, D)",
         "self.values[layer] = v.new_zeros(B, kv_heads, W, D).float()"),
        ("= k[:, :, T - last :]", "= k[:, :, T - last :].float()"),
        ("= v[:, :, T - last :]", "= v[:, :, T - last :].float()"),
        ("return k_all, v_all", "return k_all.to(k.dtype), v_all.to(v.dtype)"),
    )  # fmt: skip
    message = _message(source)
    assert "buffer is torch.float32, not k's dtype" in message


def test_stacked_key_value_buffer() -> None:
    """Keys and values in one [2, B, KV, W, D] tensor per layer: not the two buffers promised."""
    source = _edited(
        ("            self.keys[layer] = k.new_zeros(B, kv_heads, W, D)  # (B, KV, W, D), allocated once\n"
         "            self.values[layer] = v.new_zeros(B, kv_heads, W, D)\n",
         "            both = k.new_zeros(2, B, kv_heads, W, D)\n"
         "            self.keys[layer], self.values[layer] = both.unbind(0)\n"),
    )  # fmt: skip
    run_exercise(NOTEBOOK, "window_cache", source)  # two views of one storage are two buffers: fine


def test_seq_len_counts_calls() -> None:
    source = _edited(
        ("return self.seen[0]", "return self.updates"),
        ("        self.seen[layer] = seen + T\n",
         "        self.seen[layer] = seen + T\n        self.updates += layer == 0\n"),
        ("        self.seen = [0] * self.num_layers\n",
         "        self.seen = [0] * self.num_layers\n        self.updates = 0\n"),
    )  # fmt: skip
    assert "count tokens, not calls" in _message(source)


def test_not_implemented_stub() -> None:
    source = (
        "class WindowCache:\n"
        "    def __init__(self, num_layers, window):\n"
        "        self.num_layers, self.window = num_layers, window\n"
        "    def update(self, layer, k, v):\n"
        "        raise NotImplementedError()\n"
        "    @property\n"
        "    def seq_len(self):\n"
        "        return 0\n"
        "    def reset(self):\n"
        "        pass\n"
    )
    assert "not implemented" in _message(source)
