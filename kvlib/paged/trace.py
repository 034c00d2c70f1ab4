"""Step through a trace of block-manager operations and watch the physical pool (chapter 06).

Three layers, each usable alone:

- :func:`replay` runs a list of operations on a block manager and returns one :class:`Snapshot`
  per step: what happened, in words, and the pool and block tables afterwards. No drawing.
- :func:`draw_snapshot` draws one snapshot with matplotlib: the pool as a grid of blocks coloured
  by owner (a shared block in stripes, one per owner; an idle cached block grey and hatched; a free
  one white), each with its reference count and tokens, and every sequence's block table beside it.
- :class:`TraceView` is the ipywidgets player (Play button, slider, figure, the whole trace). Where
  widgets do not render it shows the figure of the current step and the trace as text.

The operations are tuples: ``("allocate", seq_id, prompt)``, ``("append", seq_id, token)``,
``("fork", parent_id, child_id)``, ``("free", seq_id)`` and ``("reclaim", n)``. The manager is a
:class:`~kvlib.paged.BlockManager` or any object with the methods the trace uses and the attributes
``block_size``, ``seqs`` (``{seq_id: table}``, a table with ``tokens`` and ``block_ids``),
``allocator`` (with ``num_blocks`` and ``ref_count(block_id)``) and ``cache`` (None, or with
``contains(block_id)``), so a learner's own manager can be traced too. A block with no owner is idle
cached if the cache holds it and free otherwise (a leaked block, on neither list, shows as free).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape
from typing import Any

from kvlib.paged.blocks import OutOfBlocks
from kvlib.validate import describe, require_int, require_token_ids

__all__ = [
    "BlockState",
    "Snapshot",
    "OPS",
    "check_ops",
    "replay",
    "format_trace",
    "draw_snapshot",
    "TraceView",
]

# operation name -> the arguments that follow it in the tuple
OPS = {
    "allocate": ("seq_id", "prompt"),
    "append": ("seq_id", "token"),
    "fork": ("parent_id", "child_id"),
    "free": ("seq_id",),
    "reclaim": ("n",),
}


@dataclass(frozen=True)
class BlockState:
    """One physical block after a step.

    ``state`` is ``"free"``, ``"used"`` or ``"idle cached"`` (reference count 0, kept by the prefix
    cache); ``owners`` are the sequences whose tables list it; ``tokens`` are the tokens whose KV it
    holds (empty when free: whatever is left there may be overwritten at any time)."""

    block_id: int
    state: str
    ref_count: int
    owners: tuple[int, ...]
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """The pool after step ``step`` (step 0: before any operation, ``op`` None)."""

    step: int
    op: tuple | None
    text: str
    blocks: tuple[BlockState, ...]
    tables: dict[int, tuple[int, ...]]  # seq_id -> block table, ascending seq_id
    lengths: dict[int, int]  # seq_id -> tokens in the sequence
    block_size: int


def check_ops(ops: Any) -> list[tuple]:
    """``ops`` validated before any runs, as a list of tuples (prompts as lists of ints); TypeError or
    ValueError naming the first bad operation, its index and what was expected."""
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
        raise TypeError(
            f"ops must be a list of operation tuples such as ('allocate', 0, [1, 2]), got {describe(ops)}"
        )
    checked: list[tuple] = []
    for i, op in enumerate(ops):
        where = f"ops[{i}]"
        if isinstance(op, (str, bytes)) or not isinstance(op, Sequence) or len(op) == 0:
            raise TypeError(
                f"{where} must be a tuple such as ('append', 0, 5) (name first, then its arguments), "
                f"got {describe(op)}"
            )
        name = op[0]
        if not isinstance(name, str) or name not in OPS:
            raise ValueError(
                f"{where}: unknown operation {describe(name)}; the operations are {', '.join(OPS)}"
            )
        params = OPS[name]
        args = tuple(op[1:])
        if len(args) != len(params):
            raise ValueError(
                f"{where} = {describe(op)}: {name} takes ({', '.join(params)}), got {len(args)} argument(s)"
            )
        values: list[Any] = []
        for param, value in zip(params, args):
            if param == "prompt":
                prompt = require_token_ids(f"{where} prompt", value)
                if not prompt:
                    raise ValueError(f"{where}: a prompt needs at least one token, got an empty one")
                values.append(prompt)
            else:
                values.append(require_int(f"{where} {param}", value, minimum=0))
        checked.append((name, *values))
    return checked


def _read(manager: Any, step: int, op: tuple | None, text: str, before: Snapshot | None) -> Snapshot:
    """The manager's state now. An idle cached block keeps the tokens it held when last in use."""
    size = manager.block_size
    owners: dict[int, list[int]] = {}
    held: dict[int, tuple[int, ...]] = {}
    tables, lengths = {}, {}
    for seq_id in sorted(manager.seqs):
        table = manager.seqs[seq_id]
        tables[seq_id], lengths[seq_id] = tuple(table.block_ids), len(table.tokens)
        for i, block_id in enumerate(table.block_ids):
            owners.setdefault(block_id, []).append(seq_id)
            held.setdefault(block_id, tuple(table.tokens[i * size : (i + 1) * size]))
    blocks = []
    cache = getattr(manager, "cache", None)
    for block_id in range(manager.allocator.num_blocks):
        ref_count = manager.allocator.ref_count(block_id)
        if ref_count > 0:
            state, tokens = "used", held.get(block_id, ())
        elif cache is not None and cache.contains(block_id):
            state, tokens = "idle cached", before.blocks[block_id].tokens if before else ()
        else:
            state, tokens = "free", ()
        blocks.append(BlockState(block_id, state, ref_count, tuple(owners.get(block_id, ())), tokens))
    return Snapshot(step, op, text, tuple(blocks), tables, lengths, size)


def _ids(ids: Sequence[int]) -> str:
    """``block 3`` or ``blocks 6, 7, 3``, in the order given (a table's order is worth seeing)."""
    return f"block {ids[0]}" if len(ids) == 1 else "blocks " + ", ".join(map(str, ids))


def _label(op: tuple) -> str:
    """The operation in words, e.g. ``allocate seq 3 (9 tokens)``."""
    name, *args = op
    if name == "allocate":
        n = len(args[1]) if hasattr(args[1], "__len__") else "?"
        return f"allocate seq {args[0]} ({n} tokens)"
    if name == "append":
        return f"append {args[1]} to seq {args[0]}"
    if name == "fork":
        return f"fork seq {args[0]} -> seq {args[1]}"
    return f"{name} {'seq ' if name == 'free' else ''}{args[0]}"


def _describe(op: tuple, result: Any, before: Snapshot, after: Snapshot) -> str:
    """What the step did, in words, from the manager's answer and the difference of the two states."""
    name, *args = op
    idle_before = {b.block_id for b in before.blocks if b.state == "idle cached"}
    idle_after = {b.block_id for b in after.blocks if b.state == "idle cached"}
    hits: list[int] = []
    if name == "allocate":
        table = after.tables[args[0]]
        n_hit = getattr(result, "num_cached_tokens", None)
        if n_hit is not None:
            hits = list(table[: n_hit // after.block_size])
        else:  # a manager without the attribute: leading blocks that held KV before the step
            for block_id in table:
                if before.blocks[block_id].state == "free":
                    break
                hits.append(block_id)
        fresh = list(table[len(hits) :])
        text = _label(op)
        text += f": prefix cache hit {_ids(hits)}" if hits else ": no prefix cache hit"
        text += f", new {_ids(fresh)}" if fresh else ", no new block"
    elif name == "append":
        old, new = before.tables[args[0]], after.tables[args[0]]
        text = _label(op) + ": "
        if result:
            text += "; ".join(f"copy-on-write block {src} -> block {dst}" for src, dst in result)
        elif len(new) > len(old):
            text += f"new {_ids(new[len(old) :])}"
        else:
            text += f"written into block {new[-1]}"
    elif name == "fork":
        text = f"{_label(op)}: shares {_ids(after.tables[args[1]])}"
    elif name == "free":
        table = before.tables[args[0]]
        parts = [
            f"{_ids(kept)} {what}"
            for what, kept in (
                ("back on the free list", [b for b in table if after.blocks[b].state == "free"]),
                ("idle in the prefix cache", [b for b in table if after.blocks[b].state == "idle cached"]),
                ("still used by other sequences", [b for b in table if after.blocks[b].state == "used"]),
            )
            if kept
        ]
        text = f"{_label(op)}: " + "; ".join(parts)
    else:
        text = _label(op)
    evicted = idle_before - idle_after - set(hits)
    if evicted:
        text += f"; evicted idle cached {_ids(sorted(evicted))}"
    return text


def replay(ops: Sequence[tuple], manager: Any) -> list[Snapshot]:
    """Run ``ops`` on ``manager`` (in place) and return ``len(ops) + 1`` snapshots: the state before
    the first operation, then the state after each one with what it did in words (a copy-on-write
    names its source and destination block, an eviction names the evicted blocks).

    An operation that raises :class:`~kvlib.paged.OutOfBlocks` is a step too (the manager promises
    to change nothing). Malformed operations raise TypeError or ValueError before any is run; an
    operation the manager rejects (an unknown sequence, a reused id) raises ValueError naming the
    step, with the manager's error as its cause."""
    ops = check_ops(ops)
    snapshots = [
        _read(manager, 0, None, f"start: {manager.allocator.num_blocks} blocks of {manager.block_size}", None)
    ]
    for i, op in enumerate(ops, start=1):
        before = snapshots[-1]
        try:
            result = getattr(manager, op[0])(*op[1:])
        except OutOfBlocks as e:
            text = f"{_label(op)}: out of blocks (needs {e.needed}, {e.available} available), nothing changed"
            snapshots.append(_read(manager, i, op, text, before))
            continue
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise ValueError(f"step {i} {op!r}: the manager refused it: {e}") from e
        after = _read(manager, i, op, "", before)
        snapshots.append(replace(after, text=_describe(op, result, before, after)))
    return snapshots


def format_trace(snapshots: Sequence[Snapshot], current: int | None = None) -> str:
    """One line per step; ``current`` (a step number) is marked with ``>``."""
    return "\n".join(f"{'>' if s.step == current else ' '} {s.step:2}  {s.text}" for s in snapshots)


def _colour(seq_id: int) -> tuple:
    import matplotlib

    return matplotlib.colormaps["tab10"](seq_id % 10)


def draw_snapshot(snapshot: Snapshot, columns: int = 6) -> Any:
    """A matplotlib Figure of one snapshot: the pool on the left (``columns`` blocks a row, block 0 top
    left; meant for the small pools of a demonstration), the block tables on the right."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    if not isinstance(snapshot, Snapshot):
        raise TypeError(f"snapshot must be a Snapshot from replay(), got {describe(snapshot)}")
    columns = require_int("columns", columns, minimum=1)
    n = len(snapshot.blocks)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.25 * cols + 3.2, 1.05 * rows + 1.3), layout="constrained")
    pool, side = fig.subplots(1, 2, width_ratios=[1.25 * cols, 3.2])
    for b in snapshot.blocks:
        x, y = b.block_id % cols, rows - 1 - b.block_id // cols  # block 0 top left
        if b.state == "used":
            width = 0.9 / max(len(b.owners), 1)  # one stripe per owner: a shared block shows all
            for k, seq_id in enumerate(b.owners):
                pool.add_patch(Rectangle((x + 0.05 + k * width, y + 0.05), width, 0.9, color=_colour(seq_id)))
        face, hatch = {"free": ("white", None), "idle cached": ("#d9d9d9", "//")}.get(b.state, ("none", None))
        shared = len(b.owners) > 1
        pool.add_patch(
            Rectangle(
                (x + 0.05, y + 0.05),
                0.9,
                0.9,
                facecolor=face,
                hatch=hatch,
                edgecolor="black",
                lw=2.5 if shared else 1,
            )
        )
        pool.text(x + 0.1, y + 0.85, f"#{b.block_id}", fontsize=8, va="top")
        pool.text(x + 0.9, y + 0.85, f"ref {b.ref_count}", fontsize=8, va="top", ha="right", weight="bold")
        tokens = " ".join(map(str, b.tokens)) if snapshot.block_size <= 8 else f"{len(b.tokens)} tokens"
        pool.text(
            x + 0.5,
            y + 0.4,
            tokens or b.state,
            fontsize=7,
            ha="center",
            va="center",
            bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1} if tokens else None,
        )
    pool.set_xlim(0, cols)
    pool.set_ylim(0, rows)
    pool.set_aspect("equal")
    pool.axis("off")
    legend = [
        Patch(facecolor="white", edgecolor="black", label="free"),
        Patch(facecolor="#d9d9d9", hatch="//", edgecolor="black", label="idle cached"),
        Patch(facecolor="white", edgecolor="black", lw=2.5, label="shared (stripes: owners)"),
    ]
    pool.legend(
        handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7, frameon=False
    )
    side.axis("off")
    side.set_title("block tables", fontsize=9, loc="left")
    for k, (seq_id, table) in enumerate(snapshot.tables.items()):
        side.text(
            0,
            0.92 - 0.1 * k,
            f"seq {seq_id} ({snapshot.lengths[seq_id]} tok): {list(table)}",
            color=_colour(seq_id),
            fontsize=8,
            transform=side.transAxes,
            weight="bold",
        )
    if not snapshot.tables:
        side.text(0, 0.92, "(no sequences)", fontsize=8, transform=side.transAxes)
    fig.suptitle("\n".join(textwrap.wrap(f"step {snapshot.step}: {snapshot.text}", 90)), fontsize=9)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


class TraceView:
    """An ipywidgets player for :func:`replay`'s snapshots: ``TraceView(snapshots)`` as a cell's last line.

    Play and the slider move through the steps; the figure (an ``Image``, drawn once per step and
    kept) and the trace with the current step in bold follow. ``view.step`` is the step shown and
    ``view.show(k)`` moves there from code (a negative ``k`` counts from the end, as in a list)."""

    def __init__(self, snapshots: Sequence[Snapshot], step: int = 0) -> None:
        import ipywidgets as w

        if isinstance(snapshots, (str, bytes)) or not isinstance(snapshots, Sequence) or not snapshots:
            raise ValueError(f"snapshots must be a non-empty list from replay(), got {describe(snapshots)}")
        for i, s in enumerate(snapshots):
            if not isinstance(s, Snapshot):
                raise TypeError(f"snapshots[{i}] must be a Snapshot from replay(), got {describe(s)}")
        self.snapshots = list(snapshots)
        last = len(self.snapshots) - 1
        self._pngs: dict[int, bytes] = {}
        self.play = w.Play(value=0, min=0, max=last, interval=1500, description="play")
        self.slider = w.IntSlider(value=0, min=0, max=last, description="step")
        w.link((self.play, "value"), (self.slider, "value"))
        self.image = w.Image(format="png")
        self.trace = w.HTML()
        self.slider.observe(self._update, names="value")
        self.widget = w.VBox([w.HBox([self.play, self.slider]), self.image, self.trace])
        self.show(step)
        self._update()

    @property
    def step(self) -> int:
        return self.slider.value

    def show(self, step: int) -> TraceView:
        """Move to ``step`` (negative counts from the end); returns self."""
        n = len(self.snapshots)
        step = require_int("step", step, minimum=-n, maximum=n - 1)
        self.slider.value = step % n
        return self

    def png(self, step: int) -> bytes:
        """The figure of ``step`` as PNG bytes (drawn on first use, then kept)."""
        if step not in self._pngs:
            self._pngs[step] = _png(draw_snapshot(self.snapshots[step]))
        return self._pngs[step]

    def _update(self, change: Any = None) -> None:
        self.image.value = self.png(self.step)
        lines = [
            f"<b>&gt; {s.step}: {escape(s.text)}</b>"
            if s.step == self.step
            else f"&nbsp;&nbsp;{s.step}: {escape(s.text)}"
            for s in self.snapshots
        ]
        self.trace.value = (
            "<div style='font-family:monospace;font-size:12px'>" + "<br>".join(lines) + "</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget; where widgets do not render, the current step's figure and the trace as text."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["image/png"] = self.png(self.step)
            bundle["text/plain"] = format_trace(self.snapshots, self.step)
        return bundle
