"""Figures for chapter 06 (matplotlib): where reserved KV memory goes, by allocator and block size.

Every function takes results from :mod:`kvlib.paged.simulate`, :mod:`kvlib.paged.sharing` or
:mod:`kvlib.paged.workload`, draws on a new figure (or on the ``ax`` given) and returns the figure, so a
notebook can show it and a script can save it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kvlib.paged.sharing import SharingResult
from kvlib.paged.simulate import StreamResult
from kvlib.paged.workload import Request
from kvlib.validate import require_int

__all__ = [
    "plot_utilization",
    "plot_block_size_tradeoff",
    "plot_length_distribution",
    "plot_sharing_savings",
]

COLORS = {"tokens": "#2a9d8f", "reservation": "#e9c46a", "internal": "#e76f51", "external": "#8d99ae"}


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def plot_utilization(results: Sequence[StreamResult], ax: Axes | None = None) -> Figure:
    """Stacked bars, one per allocator: reserved KV memory split into real tokens, reservation for
    future tokens and internal fragmentation (each bar sums to 100% of what was reserved)."""
    if not results:
        raise ValueError("results must hold at least one StreamResult, got an empty sequence")
    fig, ax = _axes(ax, (9, 4))
    names = [r.name.replace(" (", "\n(") for r in results]
    x = range(len(results))
    tokens = [100 * r.token_share for r in results]
    reservation = [100 * r.reservation_share for r in results]
    internal = [100 * r.internal_share for r in results]
    ax.bar(x, tokens, color=COLORS["tokens"], label="token states")
    ax.bar(x, reservation, bottom=tokens, color=COLORS["reservation"], label="reserved for future tokens")
    bottom = [a + b for a, b in zip(tokens, reservation)]
    ax.bar(x, internal, bottom=bottom, color=COLORS["internal"], label="internal fragmentation")
    for i, t in enumerate(tokens):
        ax.text(i, t / 2, f"{t:.0f}%", ha="center", va="center", color="white", fontsize=9, fontweight="bold")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("% of reserved KV memory")
    ax.set_ylim(0, 100)
    ax.set_title("Where reserved KV memory goes (same request stream, same budget)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False, fontsize=8)
    return fig


def plot_block_size_tradeoff(results: Sequence[StreamResult], ax: Axes | None = None) -> Figure:
    """Paged results only: utilization vs block size (left axis) and mean internal fragmentation
    per sequence vs its bound ``B - 1`` and the ``(B - 1) / 2`` expected for uniform offsets (right)."""
    paged = sorted((r for r in results if r.block_size is not None), key=lambda r: r.block_size or 0)
    if not paged:
        raise ValueError("results must hold at least one paged StreamResult (block_size set), got none")
    fig, ax = _axes(ax, (7, 4))
    bs = [r.block_size for r in paged]
    ax.plot(
        bs,
        [100 * r.token_share for r in paged],
        "o-",
        color=COLORS["tokens"],
        label="token-state utilization",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("block size (tokens)")
    ax.set_ylabel("% of reserved memory holding tokens")
    ax.set_xticks(bs, [str(b) for b in bs])
    ax2 = ax.twinx()
    ax2.plot(
        bs,
        [r.internal_per_seq for r in paged],
        "s-",
        color=COLORS["internal"],
        label="unused slots / sequence",
    )
    ax2.plot(bs, [b - 1 for b in bs], "--", color="grey", label="bound B - 1")
    ax2.plot(bs, [(b - 1) / 2 for b in bs], ":", color="grey", label="(B - 1) / 2")
    ax2.set_yscale("symlog", linthresh=1)
    ax2.set_ylabel("internal fragmentation (tokens per sequence)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center left", fontsize=8)
    ax.set_title("Paged: bigger blocks waste more of their last block")
    return fig


def plot_length_distribution(requests: Sequence[Request], ax: Axes | None = None, bins: int = 60) -> Figure:
    """Histograms of prompt and output lengths (log-scaled x): the heavy right tail of chat traffic."""
    if not requests:
        raise ValueError("requests must hold at least one Request, got an empty sequence")
    bins = require_int("bins", bins, minimum=2)  # edges of at least one bar
    fig, ax = _axes(ax, (7, 3.5))
    import numpy as np

    top = max(r.total_len for r in requests)
    edges = np.logspace(0, np.log10(max(top, 2)), bins)
    ax.hist([r.prompt_len for r in requests], bins=edges, alpha=0.6, label="prompt")
    ax.hist([r.output_len for r in requests], bins=edges, alpha=0.6, label="output")
    ax.set_xscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("requests")
    ax.legend()
    ax.set_title("Request lengths (log-normal, heavy-tailed)")
    return fig


def plot_sharing_savings(
    results: Sequence[SharingResult],
    paper_ranges: dict[str, tuple[float, float]] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Bars of measured savings; ``paper_ranges`` maps a result's workload label to a (lo, hi) band."""
    if not results:
        raise ValueError("results must hold at least one SharingResult, got an empty sequence")
    fig, ax = _axes(ax, (8, 3.5))
    labels = [r.workload for r in results]
    ax.bar(range(len(results)), [100 * r.saving for r in results], color=COLORS["tokens"])
    for i, r in enumerate(results):
        band = (paper_ranges or {}).get(r.workload)
        if band:
            ax.plot([i - 0.4, i + 0.4], [100 * band[0]] * 2, color="black", lw=1)
            ax.plot([i - 0.4, i + 0.4], [100 * band[1]] * 2, color="black", lw=1)
    ax.set_xticks(range(len(results)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("% of KV blocks saved")
    ax.set_title("Memory saved by sharing blocks (lines: range reported by the vLLM paper)")
    return fig
