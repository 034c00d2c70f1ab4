"""kvlib.hygiene: the autograd leak of cached generation, training memory, memory timelines (chapter 09).

The graph measurements are checked against what they claim: grad mode leaks more after every step,
detaching the logits changes nothing, detaching the cache or no_grad/inference_mode keep nothing, the
tokens never change, and the hooks' count equals the profiler's (allocator) count to within the few
bytes of token ids alive at that moment. The exercise's reference keeps the caller's state; the training
step's checkpointed forward is TinyDecoder.forward; CUDA paths run only where CUDA is.
"""

from __future__ import annotations

import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib import hygiene
from kvlib.cache.dense import NaiveKVCache
from kvlib.generate import generate
from kvlib.hygiene import (
    REGIMES,
    generate_without_graph,
    graph_memory_per_step,
    memory_timeline,
    snapshot_timeline,
    training_step_memory,
)
from kvlib.memory import kv_cache_bytes
from kvlib.model import ModelConfig, TinyDecoder

pytestmark = [pytest.mark.ch09, pytest.mark.usefixtures("one_torch_thread")]

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _model(num_kv_heads: int = 4, max_seq_len: int = 96, seed: int = 0) -> TinyDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=97, dim=32, num_layers=2, num_heads=4, num_kv_heads=num_kv_heads, ffn_dim=64,
        max_seq_len=max_seq_len,
    )  # fmt: skip
    model = TinyDecoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)  # sharper attention: greedy tokens that depend on the context
    return model


MODEL = _model()
PROMPT = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def runs() -> dict[str, hygiene.GraphMemory]:
    return {regime: graph_memory_per_step(MODEL, PROMPT, 12, regime) for regime in REGIMES}


def test_grad_mode_leaks_more_after_every_step(runs) -> None:
    steps = runs["grad"].steps
    assert [s.step for s in steps] == list(range(12))
    graph = [s.graph_bytes for s in steps]
    assert all(b > a for a, b in zip(graph, graph[1:]))
    assert steps[-1].graph_bytes > 5 * steps[-1].cache_bytes
    assert 0 < steps[0].graph_only_bytes <= steps[0].graph_bytes
    assert all(0 < s.graph_only_bytes < s.graph_bytes for s in steps[1:])  # decode saves the cache's keys
    assert len({s.saved_tensors for s in steps}) == 1 and steps[0].saved_tensors > 0  # same ops each step


def test_detaching_the_logits_changes_nothing_detaching_the_cache_keeps_nothing(runs) -> None:
    assert runs["detach_logits"].steps == runs["grad"].steps
    for regime in ("detach_cache", "no_grad", "inference_mode"):
        assert all(s.graph_bytes == s.graph_only_bytes == 0 for s in runs[regime].steps), regime
    assert all(s.saved_tensors > 0 for s in runs["detach_cache"].steps)  # a graph while each step runs
    assert all(s.saved_tensors == 0 for r in ("no_grad", "inference_mode") for s in runs[r].steps)


def test_tokens_and_cache_are_the_same_in_every_regime(runs) -> None:
    want = generate(MODEL, PROMPT, 12, NaiveKVCache(2))[:, PROMPT.shape[1] :]
    for regime, run in runs.items():
        assert torch.equal(run.tokens, want), regime
        assert not run.tokens.is_inference() and run.tokens.dtype == torch.long
        for s in run.steps:
            assert s.cached_tokens == PROMPT.shape[1] + s.step
            assert s.cache_bytes == kv_cache_bytes(2, 4, 8, s.cached_tokens, 2, torch.float32)
            assert s.device_bytes is None  # CPU


@pytest.mark.parametrize("enabled", [True, False])
def test_callers_grad_mode_and_model_are_left_as_they_were(enabled: bool) -> None:
    model = _model()
    model.train()
    with torch.set_grad_enabled(enabled):
        for regime in REGIMES:
            graph_memory_per_step(model, PROMPT, 3, regime)
            assert torch.is_grad_enabled() is enabled and not torch.is_inference_mode_enabled()
        generate_without_graph(model, PROMPT, 3)
        assert torch.is_grad_enabled() is enabled
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_the_profiler_counts_what_the_hooks_count(runs) -> None:
    for regime in ("grad", "detach_cache", "no_grad"):
        timeline = memory_timeline(MODEL, PROMPT, 12, regime)
        assert len(timeline.step_ends_ms) == len(timeline.step_end_bytes) == 12
        assert timeline.step_ends_ms == sorted(timeline.step_ends_ms)
        assert timeline.times_ms == sorted(timeline.times_ms) and timeline.times_ms[0] >= 0
        for end_bytes, s in zip(timeline.step_end_bytes, runs[regime].steps):
            # the same bytes, but for the few small tensors alive then (token ids, positions)
            assert 0 <= end_bytes - (s.cache_bytes + s.graph_only_bytes) < 1024, regime
    grad = memory_timeline(MODEL, PROMPT, 12, "grad")
    detached = memory_timeline(MODEL, PROMPT, 12, "detach_cache")
    plain = memory_timeline(MODEL, PROMPT, 12, "no_grad")
    assert grad.peak_bytes > detached.peak_bytes > plain.peak_bytes  # a graph inside every step
    assert detached.step_end_bytes == plain.step_end_bytes


def test_timeline_without_raw_events_uses_the_public_events() -> None:
    """The fallback for a torch without Kineto results: prof.events(), op-level bytes."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        x = torch.ones(1000)
        with record_function(f"{hygiene._STEP}0"):
            pass
        y = x * 2
        del x
        with record_function(f"{hygiene._STEP}1"):
            pass
        del y

    class PublicOnly:
        def events(self):
            return prof.events()

    raw, raw_ends = hygiene._memory_changes(prof)
    public, public_ends = hygiene._memory_changes(PublicOnly())
    for changes in (raw, public):
        assert sum(delta for _, delta in changes) == 0  # everything freed
        assert max(delta for _, delta in changes) == 4000
    assert len(raw_ends) == len(public_ends) == 2


def test_generate_without_graph_is_greedy_generation_without_a_graph() -> None:
    gqa = _model(num_kv_heads=2)
    prompt = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(2))
    before = prompt.clone()
    saved = []
    with (
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t),
    ):
        out = generate_without_graph(gqa, prompt, 40)
    assert not saved
    assert torch.equal(out, generate(gqa, prompt, 40, NaiveKVCache(2))[:, 17:])
    assert out.dtype == torch.long and not out.requires_grad and not out.is_inference()
    assert len({tuple(r.tolist()) for r in out}) == 3
    assert torch.equal(prompt, before)
    empty = generate_without_graph(gqa, prompt, 0)
    assert empty.shape == (3, 0) and empty.dtype == torch.long


def test_generate_without_graph_restores_grad_mode_when_it_refuses() -> None:
    with torch.enable_grad(), pytest.raises(ValueError, match="context"):
        generate_without_graph(MODEL, PROMPT, 96)
    assert torch.is_grad_enabled()


def test_checkpointed_forward_is_the_models_forward() -> None:
    model = _model().train()
    ids = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hygiene._logits(model, ids, True), model(ids))
    grads = []
    for checkpointing in (False, True):
        model.zero_grad(set_to_none=True)
        hygiene._logits(model, ids, checkpointing).logsumexp(-1).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(plain, checkpointed)


def test_training_memory_checkpointing_and_autocast() -> None:
    model = _model(max_seq_len=256)
    marker = torch.ones_like(model.embed_tokens.weight)
    model.embed_tokens.weight.grad = marker
    ids = torch.randint(0, 97, (8, 129), generator=torch.Generator().manual_seed(4))
    rows = {
        (c, a): training_step_memory(model, ids, checkpointing=c, bf16_autocast=a)
        for c in (False, True)
        for a in (False, True)
    }
    plain = rows[(False, False)]
    assert rows[(True, False)].peak_bytes < plain.peak_bytes / 2  # activations dominate this tiny model
    assert rows[(True, False)].allocations > plain.allocations  # the recomputation
    assert rows[(True, False)].loss == pytest.approx(plain.loss, abs=1e-6)
    assert rows[(False, True)].loss == pytest.approx(plain.loss, rel=2e-2)
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    for (c, a), r in rows.items():
        assert (r.checkpointing, r.bf16_autocast, r.device) == (c, a, "cpu")
        assert r.peak_bytes > param_bytes and r.seconds > 0  # the gradients are allocated in the step
    assert not model.training and model.embed_tokens.weight.grad is marker
    assert all(p.grad is None for n, p in model.named_parameters() if n != "embed_tokens.weight")


def test_snapshot_timeline_reads_allocs_and_frees() -> None:
    snapshot = {
        "segments": [],
        "device_traces": [
            [
                {"action": "segment_alloc", "size": 2097152, "time_us": 5},
                {"action": "alloc", "size": 512, "time_us": 10},
                {"action": "alloc", "size": 1024, "time_us": 30},
                {"action": "free_requested", "size": 512, "time_us": 40},
                {"action": "free_completed", "size": 512, "time_us": 41},
            ]
        ],
    }
    times, live = snapshot_timeline(snapshot)
    assert live == [512, 1536, 1024]
    assert times == pytest.approx([0.0, 0.02, 0.031])


@cuda
@pytest.mark.gpu
def test_cuda_equivalents() -> None:
    model = _model().cuda()
    prompt = PROMPT.cuda()
    grad = graph_memory_per_step(model, prompt, 6, "grad").steps
    plain = graph_memory_per_step(model, prompt, 6, "no_grad").steps
    assert all(b.device_bytes > a.device_bytes for a, b in zip(grad, grad[1:]))
    assert grad[-1].device_bytes > plain[-1].device_bytes >= plain[-1].cache_bytes
    ids = torch.randint(0, 97, (4, 33), device="cuda")
    assert training_step_memory(model, ids).peak_bytes > training_step_memory(model, ids, True).peak_bytes
    snapshot = hygiene.cuda_memory_history(lambda: generate_without_graph(model, prompt, 4))
    times, live = snapshot_timeline(snapshot, torch.cuda.current_device())
    assert times and max(live) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_memory_history_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        hygiene.cuda_memory_history(lambda: None)


BAD = [
    Case("model not a TinyDecoder", lambda: graph_memory_per_step("model", PROMPT, 2), TypeError, ("model",)),
    Case("regime unknown", lambda: graph_memory_per_step(MODEL, PROMPT, 2, "nograd"), ValueError,
         ("regime", "no_grad")),
    Case("regime not a str", lambda: memory_timeline(MODEL, PROMPT, 2, None), TypeError, ("regime",)),
    Case("n_new 0 measured", lambda: graph_memory_per_step(MODEL, PROMPT, 0), ValueError, ("n_new", ">= 1")),
    Case("n_new float", lambda: generate_without_graph(MODEL, PROMPT, 2.0), TypeError, ("n_new",)),
    Case("n_new negative", lambda: generate_without_graph(MODEL, PROMPT, -1), ValueError, ("n_new",)),
    Case("ids 1-d", lambda: generate_without_graph(MODEL, PROMPT[0], 2), ValueError, ("[batch, T]",)),
    Case("ids float", lambda: generate_without_graph(MODEL, PROMPT.float(), 2), ValueError, ("LongTensor",)),
    Case("ids a list", lambda: generate_without_graph(MODEL, [[1, 2]], 2), TypeError, ("prompt_ids",)),
    Case("past the context", lambda: generate_without_graph(MODEL, PROMPT, 95), ValueError, ("context",)),
    Case("timeline past the context", lambda: memory_timeline(MODEL, PROMPT, 200), ValueError, ("context",)),
    Case("training ids 1 token", lambda: training_step_memory(MODEL, PROMPT[:, :1]), ValueError, ("T + 1",)),
    Case("training ids float", lambda: training_step_memory(MODEL, PROMPT.float()), ValueError,
         ("torch.long",)),
    Case("training ids 3-d", lambda: training_step_memory(MODEL, PROMPT[None]), ValueError, ("input_ids",)),
    Case("checkpointing str", lambda: training_step_memory(MODEL, PROMPT, checkpointing="yes"), TypeError,
         ("checkpointing",)),
    Case("bf16 int", lambda: training_step_memory(MODEL, PROMPT, bf16_autocast=1), TypeError,
         ("bf16_autocast",)),
    Case("snapshot not a dict", lambda: snapshot_timeline([]), TypeError, ("snapshot", "device_traces")),
    Case("snapshot device past", lambda: snapshot_timeline({"device_traces": [[]]}, 1), ValueError,
         ("device=1",)),
    Case("history fn not callable", lambda: hygiene.cuda_memory_history(3), TypeError, ("fn",)),
]  # fmt: skip


@pytest.mark.parametrize("case", params(BAD))
def test_bad_input(case: Case) -> None:
    assert_clear_error(case)
