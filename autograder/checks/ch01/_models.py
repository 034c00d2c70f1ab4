"""Stand-ins for a model that record or break its calls, for the generate and compare checks."""

from __future__ import annotations

from typing import Any

import torch

from ..common import expect


class _ModelWrapper:
    """Stands in for a model: the checks override the call, everything else (config, eval(),
    parameters(), ...) reaches the wrapped model, so correct solutions that use it still work."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class Recorder(_ModelWrapper):
    """Wraps a model and records every call: tokens fed, positions actually used, cache length before."""

    def __init__(self, model: Any, cache: Any = None) -> None:
        super().__init__(model)
        self.calls: list[dict[str, Any]] = []
        self.cache = cache  # the cache generate was given: every call must use this object

    def __call__(
        self, input_ids: torch.Tensor, positions: Any = None, cache: Any = None, **kwargs: Any
    ) -> Any:
        expect(not kwargs, f"the model takes (input_ids, positions=None, cache=None); got {sorted(kwargs)}")
        expect(
            isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2,
            "feed the model a [batch, T] tensor of token ids",
        )
        T = input_ids.shape[1]
        expect(
            self.cache is None or cache is None or cache is self.cache,
            "the model was called with a cache other than the one generate was given: use the `cache` "
            "argument (the caller reads it afterwards), do not build your own",
        )
        expect(
            positions is not None,
            "pass positions explicitly on every call, model(input_ids, positions=..., cache=cache), "
            "e.g. torch.arange(T) for the prefill (the spec asks for it; a model may not default them)",
        )
        expect(
            isinstance(positions, torch.Tensor) and positions.dtype == torch.long,
            f"positions must be a torch.long tensor (a LongTensor), got "
            f"{positions.dtype if isinstance(positions, torch.Tensor) else type(positions).__name__}: "
            "torch.arange(...) of ints or torch.tensor([...]) of ints (no float, no int32)",
        )
        expect(
            tuple(positions.shape) == (T,),
            f"positions must have shape [T_in] = [{T}], shared by the batch, got {tuple(positions.shape)}",
        )
        before = cache.seq_len if cache is not None else 0
        used = (
            torch.arange(before, before + T)
            if positions is None
            else torch.as_tensor(positions).reshape(-1, T)[0]
        )
        self.calls.append({"T": T, "positions": used.tolist(), "cache": cache is not None, "before": before})
        return self.model(input_ids, positions=positions, cache=cache)

    forward = __call__


class BuggyCachedModel(_ModelWrapper):
    """A model whose *cached path* is wrong in one controlled place (to see if a checker notices).

    Cached calls are numbered per generation: 0 is the prefill (the call into an empty cache), s >= 1
    the s-th decode call. `bump` is added to the last position's logits of the cached calls in `calls`
    (None: every decode call), for the batch rows in `rows` (None: all); `bump` may be a dict
    {call: value} for a signed difference that changes from step to step. With `shift=True` it lands on
    one token only (the runner-up of the argmax), which changes the greedy choice; with shift="flip" the
    runner-up is set just `bump` above the argmax, so the cached logits move little but the token changes.
    """

    def __init__(
        self,
        model: Any,
        bump: float | dict[int, float],
        calls: set[int] | None = None,
        rows: list[int] | None = None,
        shift: bool | str = False,
    ) -> None:
        super().__init__(model)
        self.bump, self.calls, self.rows, self.shift = bump, calls, rows, shift
        self.cached_call = 0

    def __call__(self, input_ids: torch.Tensor, positions: Any = None, cache: Any = None) -> torch.Tensor:
        before = cache.seq_len if cache is not None else None
        logits = self.model(input_ids, positions=positions, cache=cache)
        if cache is None:
            return logits
        self.cached_call = 0 if before == 0 else self.cached_call + 1
        index = self.cached_call
        if isinstance(self.bump, dict):
            applies, bump = index in self.bump, self.bump.get(index, 0.0)
        else:
            applies, bump = (index >= 1 if self.calls is None else index in self.calls), self.bump
        if not applies:
            return logits
        rows = torch.arange(logits.shape[0]) if self.rows is None else torch.tensor(self.rows)
        logits = logits.clone()
        if self.shift == "flip":  # the runner-up overtakes the argmax by `bump`: the smallest change of token
            order = logits[rows, -1].topk(2, dim=-1).indices  # [rows, 2]
            logits[rows, -1, order[:, 1]] = logits[rows, -1].max(dim=-1).values + bump
        elif self.shift:
            target = (logits[rows, -1].argmax(dim=-1) + 1) % logits.shape[-1]  # [rows]
            logits[rows, -1, target] += bump
        else:
            logits[rows, -1] += bump
        return logits

    forward = __call__
