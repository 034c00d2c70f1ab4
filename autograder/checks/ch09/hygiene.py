"""Exercise `generate_without_graph`: greedy generation with a KV cache that records no autograd graph.

Every call runs on a model whose parameters require grad, inside ``saved_tensors_hooks`` that count
what autograd saves for backward, with a forward pre-hook on the embedding that numbers the model
calls (it fires for ``model(...)`` and ``model.forward(...)`` alike). So the checks see which calls
recorded a graph (all of them, only the decode steps, only the prefill) and how many bytes it held by
the last call, without guessing how the learner avoided it (no_grad, inference_mode, a decorator,
parameters frozen and restored). Around each call they compare the caller's grad and inference
modes, ``model.training`` and every parameter's ``requires_grad`` before and after, with grad enabled
and disabled by the caller, and after the model raises midway (a prompt running past the context).
Then the output (an ordinary torch.long tensor [B, n_new], not an inference tensor), the call pattern
(a prefill over the prompt, then one token per call, n_new calls) and the tokens against kvlib's
greedy generation, on batches with distinct rows, lengths past the visible ones, GQA, n_new = 0 and
one-token prompts; a wrong token is diagnosed (positions off by one, not advanced, row 0's token for
every row), and a call that is right alone but wrong after others is named as state kept between calls.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..common import CheckFailed, expect
from ..delegation import graded
from ..fixtures import generator, tiny_model
from ..properties import call_pure

NAME = "generate_without_graph"

# kvlib's reference first (same signature), then the generation loops that hand in the answer whole.
REFERENCES = (
    "kvlib.hygiene.generate_without_graph",
    "kvlib.hygiene.graph_memory_per_step",
    "kvlib.generate.generate",
    "kvlib.generate.generate_uncached",
    "kvlib.generate.timed_generate",
)


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


@dataclass
class _Call:
    width: int  # tokens fed
    positions: list[int] | None  # as passed, row 0 (None: left to the model's default; [] unknown)
    saved: int = 0  # tensors autograd saved during this call
    held_bytes: int = 0  # bytes the graph held when this call started (parameters excluded)


@dataclass
class _Watch:
    """Numbers the model calls and counts the tensors autograd saves in each (see the module doc)."""

    model: Any
    calls: list[_Call] = field(default_factory=list)
    refs: list[weakref.ref] = field(default_factory=list)
    saved_outside: int = 0  # saved before the first model call (not by the model)
    pending: list[int] | None = field(default_factory=list)  # positions seen by the model's own hook

    def __post_init__(self) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}

    def held_bytes(self) -> int:
        storages = {}
        for ref in self.refs:
            t = ref()
            if t is not None and t.untyped_storage().data_ptr() not in self.params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return sum(storages.values())

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        held = tensor.detach()  # referenced by the graph only, so the weakref dies with the graph
        self.refs.append(weakref.ref(held))
        if self.calls:
            self.calls[-1].saved += 1
        else:
            self.saved_outside += 1
        return held

    def _model_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        """model(...) (not model.forward(...)): note the positions for the embedding's hook, next."""
        positions = kwargs["positions"] if "positions" in kwargs else (args[1] if len(args) > 1 else None)
        ids = args[0] if args else kwargs.get("input_ids")
        self.pending = []
        if positions is None:
            self.pending = None
        elif isinstance(positions, torch.Tensor) and isinstance(ids, torch.Tensor) and ids.dim() == 2:
            if positions.numel() and positions.numel() % ids.shape[1] == 0:
                self.pending = positions.reshape(-1, ids.shape[1])[0].tolist()

    def _embed_hook(self, module: Any, args: tuple) -> None:
        ids = args[0] if args else None
        width = ids.shape[1] if isinstance(ids, torch.Tensor) and ids.dim() == 2 else -1
        self.calls.append(_Call(width, self.pending, held_bytes=self.held_bytes() if self.refs else 0))
        self.pending = []

    @contextlib.contextmanager
    def watching(self) -> Iterator[_Watch]:
        handles = [
            self.model.register_forward_pre_hook(self._model_hook, with_kwargs=True),
            self.model.embed_tokens.register_forward_pre_hook(self._embed_hook),
        ]
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda held: held):
                yield self
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def _modes(grad: bool) -> Iterator[None]:
    """Run with the caller's grad mode set to ``grad``; whatever the learner leaves is undone afterwards."""
    before = torch.is_grad_enabled()
    torch.set_grad_enabled(grad)
    try:
        yield
    finally:
        torch.set_grad_enabled(before)


def _prompt(model: Any, B: int, T: int, seed: int) -> torch.Tensor:
    """[B, T] ids whose rows differ (so each row has its own greedy tokens)."""
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=generator(seed))
    ids[:, 0] = torch.arange(B) % model.config.vocab_size  # distinct rows even for T = 1
    return ids


def _reference(model: Any, prompt: torch.Tensor, N: int) -> torch.Tensor:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate

    if N == 0:
        return prompt.new_zeros((prompt.shape[0], 0))
    return generate(model, prompt, N, NaiveKVCache(model.config.num_layers))[:, prompt.shape[1] :]


@dataclass
class _Case:
    model: Any
    B: int
    T: int
    N: int
    seed: int
    grad: bool = True  # the caller's grad mode
    training: bool = False  # the model's mode
    frozen: bool = False  # the caller froze some parameters (the embedding and the norms) before the call

    @property
    def what(self) -> str:
        mode = "grad enabled" if self.grad else "grad disabled (inside torch.no_grad())"
        train = ", model in training mode" if self.training else ""
        if self.frozen:
            train += ", the embedding and norm weights frozen by the caller (requires_grad False)"
        return f"{NAME}(model, a [{self.B}, {self.T}] prompt, n_new={self.N}) called with {mode}{train}"


def _check_modes(case: _Case, grad_after: bool, inference_after: bool) -> None:
    what = case.what
    if grad_after != case.grad:
        if case.grad:
            raise CheckFailed(
                f"{what}: it left grad mode disabled (torch.is_grad_enabled() is False afterwards): "
                "torch.set_grad_enabled(False) never restored turns off autograd for everything the "
                "caller runs next (a training step would silently not learn); use a `with "
                "torch.no_grad():` block, or put back the mode you found"
            )
        raise CheckFailed(
            f"{what}: it left grad mode enabled although the caller had disabled it: restore the mode you "
            "found (prev = torch.is_grad_enabled() ... torch.set_grad_enabled(prev)), do not switch it on; "
            "a `with torch.no_grad():` block does this for you"
        )
    expect(
        not inference_after,
        f"{what}: it left inference mode switched on for the caller: enter torch.inference_mode() in a "
        "`with` block so it ends when the block does",
    )


def _check_model_state(case: _Case, requires_before: list[bool]) -> None:
    model, what = case.model, case.what
    expect(
        model.training == case.training,
        f"{what}: model.training was {case.training} before the call and {model.training} after: "
        "leave the model's mode as you found it (this model generates the same in both modes; if you "
        "switch it, put it back with model.train(was_training))",
    )
    changed = [
        i for i, (p, was) in enumerate(zip(model.parameters(), requires_before)) if p.requires_grad != was
    ]
    thawed = [i for i in changed if not requires_before[i]]
    if thawed:
        raise CheckFailed(
            f"{what}: it switched requires_grad on for {len(thawed)} parameter(s) the caller had frozen: "
            "restoring every parameter to requires_grad=True is not restoring it; remember each parameter's "
            "own requires_grad before changing it and put that back (or leave requires_grad alone and use "
            "torch.no_grad())"
        )
    if changed:
        raise CheckFailed(
            f"{what}: it changed requires_grad of {len(changed)} parameter(s) and left them so: freezing the "
            "weights (requires_grad_(False)) stops the graph, but the caller's model can no longer be "
            "trained; use torch.no_grad(), or restore every parameter's requires_grad"
        )


def _check_graph(case: _Case, watch: _Watch) -> None:
    recorded = [i for i, c in enumerate(watch.calls) if c.saved]
    if not recorded and not watch.saved_outside:
        return
    what, calls = case.what, watch.calls
    total = sum(c.saved for c in calls) + watch.saved_outside
    held = max([c.held_bytes for c in calls] + [watch.held_bytes()])
    size = f"autograd saved {total} tensors for backward" + (
        f"; by the start of the last model call the graph held {_mib(held)} of activations" if held else ""
    )
    if recorded == list(range(1, len(calls))) and len(calls) > 1:
        raise CheckFailed(
            f"{what}: the decode calls recorded an autograd graph and the prefill did not ({size}): a "
            "torch.no_grad() block that ends after the prefill? Keep the whole generation loop inside it"
        )
    if recorded == [0] and len(calls) > 1:
        raise CheckFailed(
            f"{what}: the prefill recorded an autograd graph ({size}); the decode calls did not: run the "
            "prefill inside torch.no_grad() too"
        )
    raise CheckFailed(
        f"{what}: the model calls recorded an autograd graph ({size}). Generation needs no gradients: run "
        "the whole loop under torch.no_grad() or torch.inference_mode(). Detaching the logits is not "
        "enough: the cache's keys and values were computed with grad, so they carry the graph of every "
        "earlier step"
    )


def _check_output(case: _Case, out: Any) -> None:
    what, B, T, N = case.what, case.B, case.T, case.N
    expect(
        isinstance(out, torch.Tensor),
        f"{what}: it must return a torch.Tensor of ids, got {type(out).__name__}",
    )
    expect(
        not out.is_inference(),
        f"{what}: it returned an inference tensor (made under torch.inference_mode()): it cannot be saved "
        "for a later backward (feeding the new ids to a training step raises); return a .clone() made "
        "after the inference_mode block, or use torch.no_grad()",
    )
    expect(
        not out.requires_grad and out.grad_fn is None,
        f"{what}: it returned a tensor that requires grad (or has a grad_fn): return token ids, made without "
        "a graph",
    )
    if tuple(out.shape) == (B, T + N) and N:
        raise CheckFailed(
            f"{what}: it returned {T + N} ids per row, the prompt too: return only the {N} new tokens, "
            f"shape [{B}, {N}]"
        )
    if tuple(out.shape) != (B, N):
        hint = (
            "; with n_new = 0 return an empty torch.long tensor [B, 0] (no prefill, no token)"
            if N == 0
            else "; one new token per step and per row"
        )
        raise CheckFailed(f"{what}: it returned shape {tuple(out.shape)}, expected ({B}, {N}){hint}")
    expect(
        out.dtype == torch.long,
        f"{what}: it returned ids of dtype {out.dtype}; token ids must be torch.long (argmax gives it; "
        "torch.zeros(...) without dtype= is float32)",
    )


def _check_calls(case: _Case, watch: _Watch) -> None:
    what, T, N = case.what, case.T, case.N
    widths = [c.width for c in watch.calls]
    if N == 0:
        expect(
            not widths,
            f"{what}: it called the model {len(widths)} time(s); with n_new = 0 there is nothing to "
            "generate, so make no model call",
        )
        return
    expect(bool(widths), f"{what}: it never called the model")
    expect(
        widths[0] == T,
        f"{what}: the first model call fed {widths[0]} tokens; the prefill feeds the whole prompt ({T}) "
        "in one call",
    )
    for s, width in enumerate(widths[1:], start=1):
        if width == T + s:
            raise CheckFailed(
                f"{what}: decode call {s} fed {width} tokens, the whole sequence so far: that is generation "
                "without a cache. Keep a KV cache: after the prefill feed only the newest token"
            )
        expect(
            width == 1,
            f"{what}: decode call {s} fed {width} tokens; after the prefill feed only the newest token",
        )
    for s, c in enumerate(watch.calls[:N]):
        _check_positions(what, T, s, c.positions)
    if len(widths) == N + 1:
        raise CheckFailed(
            f"{what}: it made {N + 1} model calls for {N} new tokens: the last token chosen needs no forward "
            f"(n_new calls: the prefill gives the first token, each decode call the next)"
        )
    expect(len(widths) == N, f"{what}: it made {len(widths)} model calls; expected n_new = {N}")


def _check_positions(what: str, T: int, s: int, used: list[int] | None) -> None:
    """Call s's positions, when they were passed to model(...): 0..T-1 for the prefill, T + s - 1 after."""
    if not used:  # None: the model's default (the cache's length), right whenever the cache is
        return
    if s == 0:
        expect(
            used == list(range(T)),
            f"{what}: the prefill must use positions 0..{T - 1}, got {used[:6]}"
            + ("..." if len(used) > 6 else ""),
        )
        return
    want = T + s - 1
    if used != [want]:
        hint = {
            want + 1: "one too high",
            want - 1: "one too low",
            T: "the same position in every decode call: advance it by one per call",
            0: "restarted at 0",
            s: "counted from the start of the generation, not of the sequence",
        }.get(used[0], "wrong")
        raise CheckFailed(
            f"{what}: decode call {s} used position {used[0]}, but the token it feeds sits at position "
            f"{want} (prompt length {T} + {s - 1} generated before it): {hint}"
        )


def _check_tokens(case: _Case, out: torch.Tensor, want: torch.Tensor) -> None:
    if torch.equal(out, want):
        return
    what, B = case.what, case.B
    bad_rows = (out != want).any(dim=1).nonzero().flatten().tolist()
    if B > 1 and 0 not in bad_rows and all(torch.equal(out[r], out[0]) for r in bad_rows):
        raise CheckFailed(
            f"{what}: rows {bad_rows} got row 0's tokens; each row picks its own greedy token, "
            "logits[:, -1].argmax(dim=-1)"
        )
    first = int((out != want).any(dim=0).nonzero()[0].item())
    raise CheckFailed(
        f"{what}: new token {first} differs from greedy generation"
        + (f" (batch row {bad_rows[0]})" if B > 1 else "")
        + ": the argmax over the vocabulary of each row's logits at the last position"
    )


def _run(fn: Callable[..., Any], case: _Case) -> torch.Tensor:
    """One call under the case's modes, with every property of the docstring checked. Returns the ids."""
    model = case.model
    prompt = _prompt(model, case.B, case.T, case.seed)
    want = _reference(model, prompt, case.N)
    model.train(case.training)
    original = [p.requires_grad for p in model.parameters()]
    if case.frozen:
        for name, p in model.named_parameters():
            if "embed" in name or "norm" in name:
                p.requires_grad_(False)
    requires = [p.requires_grad for p in model.parameters()]
    inference_before = torch.is_inference_mode_enabled()
    watch = _Watch(model)
    try:
        with _modes(case.grad):
            with watch.watching():
                out = call_pure(fn, model, prompt, case.N, what=case.what)
            grad_after, inference_after = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        _check_modes(case, grad_after, inference_after and not inference_before)
        _check_model_state(case, requires)
        _check_graph(case, watch)
        _check_output(case, out)
        _check_calls(case, watch)
        _check_tokens(case, out, want)
    finally:
        model.eval()
        for p, was in zip(model.parameters(), original):
            p.requires_grad_(was)
    return out


def _run_all(fn: Callable[..., Any], cases: list[_Case]) -> None:
    """Each case in turn; a case that fails after earlier ones passed is retried against the first case:
    if that one now fails too, the function keeps state between calls."""
    for i, case in enumerate(cases):
        try:
            _run(fn, case)
        except CheckFailed as exc:
            if i and _fails_now(fn, cases[0]):
                raise CheckFailed(
                    f"{exc}. A call that was right on its own went wrong after other calls: state kept "
                    "between calls (a cache or list made once, at module level or as a default argument?); "
                    "build the cache inside the function, per call"
                ) from None
            raise


def _fails_now(fn: Callable[..., Any], case: _Case) -> bool:
    try:
        _run(fn, case)
    except CheckFailed:
        return True
    return False


def _check_error_path(fn: Callable[..., Any]) -> None:
    """The model raises midway (a prompt that runs past the context): grad mode must be restored."""
    model = tiny_model(7, max_seq_len=32)
    prompt = _prompt(model, 2, 28, 71)
    what = f"{NAME}(model, a [2, 28] prompt, n_new=10) on a model whose context is 32 positions"
    requires = [p.requires_grad for p in model.parameters()]
    raised = None
    model_errors: list[BaseException] = []  # what the model itself raised (model(...) and model.forward(...))
    inner = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except Exception as exc:
            model_errors.append(exc)
            raise

    model.forward = forward
    try:
        with _modes(True):
            try:
                fn(model, prompt, 10)
            except NotImplementedError:
                raise CheckFailed(f"{NAME} is not implemented yet (it raised NotImplementedError)") from None
            except Exception as exc:  # noqa: BLE001 - the model's error is the point
                raised = exc
            grad_after = torch.is_grad_enabled()
    finally:
        for p, was in zip(model.parameters(), requires):
            p.requires_grad_(was)
    expect(
        raised is not None,
        f"{what} returned, but the model raises once a position reaches the context: let the model's "
        "error propagate (do not catch it)",
    )
    if model_errors and not isinstance(raised, type(model_errors[-1])):
        mine = model_errors[-1]
        raise CheckFailed(
            f"{what}: the model raised {type(mine).__name__} ({str(mine)[:80]}...), and the call raised "
            f"{type(raised).__name__} instead: let the model's error propagate as it is (a try/finally or a "
            "`with` block restores the modes without catching it; if you catch it, re-raise it with `raise`)"
        )
    expect(
        grad_after,
        f"{what}: the model raised midway ({type(raised).__name__}) and grad mode was left disabled: the "
        "caller's grad mode must come back on the error path too; `with torch.no_grad():` restores it, "
        "torch.set_grad_enabled(prev) after the loop is never reached when the loop raises (use "
        "try/finally)",
    )


@graded(NAME, *REFERENCES)
def generate_without_graph_visible(fn: Callable[..., Any]) -> None:
    model = tiny_model(0, max_seq_len=128)
    _run_all(
        fn,
        [
            _Case(model, B=2, T=5, N=6, seed=1),  # grad enabled, as in a notebook
            _Case(model, B=2, T=4, N=3, seed=2, grad=False),  # the caller had disabled grad
        ],
    )
    print("visible tests passed")


def _hidden_cases() -> list[_Case]:
    model = tiny_model(1, max_seq_len=128)
    gqa = tiny_model(2, num_heads=4, num_kv_heads=2, max_seq_len=128)
    return [
        _Case(model, B=3, T=6, N=7, seed=11),
        _Case(model, B=3, T=9, N=4, seed=12),  # same batch: a cache kept from the call before shows
        _Case(model, B=1, T=1, N=1, seed=13),  # one-token prompt, one new token
        _Case(model, B=3, T=17, N=33, seed=14, training=True),  # past the visible lengths, train mode
        _Case(gqa, B=2, T=33, N=40, seed=15),  # GQA, long
        _Case(model, B=4, T=7, N=0, seed=16),  # nothing to generate
        _Case(model, B=4, T=7, N=0, seed=16, grad=False),
        _Case(gqa, B=5, T=3, N=9, seed=17, grad=False, training=True),
        _Case(model, B=2, T=100, N=20, seed=18),
        _Case(model, B=2, T=5, N=4, seed=19, frozen=True),  # requires_grad put back as found, not to True
    ]


@graded(NAME, *REFERENCES)
def generate_without_graph_hidden(fn: Callable[..., Any]) -> None:
    cases = _hidden_cases()
    _run_all(fn, cases)
    _check_error_path(fn)
    _run(fn, cases[0])  # right again after the error
    print("hidden tests passed")
