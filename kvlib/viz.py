"""Plots and widgets for the notebooks (chapters 01, 02 and 09).

Plot functions take measured numbers (never compute them) and return the matplotlib Figure, so
a notebook cell both shows the figure and can save or test it. `MemoryCalculator` is the
ipywidgets KV-cache calculator: sliders for the formula's inputs, a live size and a bar against
a GPU memory budget. Its current result is readable from Python (`.bytes`, `.text`), which is
how tests (and a browser test that moves a slider) check that the kernel sees the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from kvlib.memory import MODEL_CONFIGS, GiB, format_bytes, kv_cache_bytes
from kvlib.validate import describe, require_int, require_number


def _finite_number(name: str, value: Any) -> float:
    """A measured number: NaN or inf would vanish from a plot without a word, so it is an error."""
    return require_number(name, value, minimum=None)


def _finite_numbers(name: str, values: Any) -> list[float]:
    """A non-empty sequence of finite numbers, as floats."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {describe(values)}")
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one value, got an empty {type(values).__name__}")
    return [_finite_number(f"{name}[{i}]", v) for i, v in enumerate(values)]


def _axes(ax: Any, figsize: tuple[float, float] = (6.0, 3.6)) -> tuple[Any, Any]:
    """The caller's axes, or a new figure. Call it only after every argument is checked, so that a
    failed call neither draws on the caller's axes nor leaves an empty figure open."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes (or None for a new figure), got {describe(ax)}")
    return ax.figure, ax


def plot_time_per_token(
    lengths: Sequence[int], cached_s: Sequence[float], uncached_s: Sequence[float], ax: Any = None
) -> Any:
    """Milliseconds per generated token versus context length, with and without a KV cache."""
    lengths = _finite_numbers("lengths", lengths)
    cached_s, uncached_s = _finite_numbers("cached_s", cached_s), _finite_numbers("uncached_s", uncached_s)
    if not (len(lengths) == len(cached_s) == len(uncached_s)):
        raise ValueError(
            "lengths, cached_s and uncached_s must be non-empty and of equal length, got "
            f"{len(lengths)}, {len(cached_s)} and {len(uncached_s)} values"
        )
    fig, ax = _axes(ax)
    ax.plot(lengths, [1e3 * s for s in uncached_s], "o-", color="tab:red", label="no cache (recompute all)")
    ax.plot(lengths, [1e3 * s for s in cached_s], "o-", color="tab:blue", label="KV cache (one new token)")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("time per new token (ms)")
    ax.set_title("Cost of one more token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_prefill_decode(prefill_s: float, decode_s: Sequence[float], ax: Any = None) -> Any:
    """Time of the prefill call and of every decode call of one generation (a bar per call)."""
    prefill_s = _finite_number("prefill_s", prefill_s)
    decode_s = _finite_numbers("decode_s (one time per decode step)", decode_s)
    fig, ax = _axes(ax)
    ax.bar([0], [1e3 * prefill_s], color="tab:orange", label="prefill (whole prompt)")
    ax.bar(
        range(1, len(decode_s) + 1), [1e3 * s for s in decode_s], color="tab:blue", label="decode (1 token)"
    )
    ax.set_xlabel("model call")
    ax.set_ylabel("ms")
    ax.set_title("Prefill once, then one decode call per token")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_bytes(
    xs: Sequence[float],
    series: dict[str, Sequence[float]],
    xlabel: str,
    title: str,
    ax: Any = None,
    unit: str = "MiB",
) -> Any:
    """Bytes versus a variable (sequence length, batch) for several named series (e.g. measured, formula)."""
    scales = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": GiB}
    if not isinstance(unit, str) or unit not in scales:
        raise ValueError(f"unit must be one of {', '.join(scales)}, got {describe(unit)}")
    scale = scales[unit]
    xs = _finite_numbers("xs", xs)
    if not isinstance(series, Mapping):
        raise TypeError(f"series must be a dict of name -> values, got {describe(series)}")
    if not series:
        raise ValueError("series must hold at least one named series, got an empty dict")
    series = {name: _finite_numbers(f"series[{name!r}]", ys) for name, ys in series.items()}
    for name, ys in series.items():  # every series checked before drawing: a failed call draws nothing
        if len(ys) != len(xs):
            raise ValueError(f"series {name!r} has {len(ys)} values for {len(xs)} x values")
    fig, ax = _axes(ax)
    markers = ["o", "x", "s", "^", "d"]
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(
            xs,
            [y / scale for y in ys],
            marker=markers[i % len(markers)],
            linestyle="-" if i == 0 else "--",
            label=name,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"KV cache ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_model_table(seq_len: int = 4096, dtype: str = "fp16", ax: Any = None) -> Any:
    """Horizontal bars: KV bytes per sequence of `seq_len` tokens for every model in MODEL_CONFIGS."""
    seq_len = require_int("seq_len", seq_len, minimum=1)
    names = list(MODEL_CONFIGS)
    sizes = [MODEL_CONFIGS[n].kv_bytes(seq_len, 1, dtype) / GiB for n in names]
    fig, ax = _axes(ax, (6.5, 0.35 * len(names) + 1.2))
    ax.barh(
        names,
        sizes,
        color=[
            "tab:green" if MODEL_CONFIGS[n].num_kv_heads < MODEL_CONFIGS[n].num_heads else "tab:gray"
            for n in names
        ],
    )
    for y, s in enumerate(sizes):
        ax.text(s, y, f" {s:.2f}", va="center", fontsize=8)
    ax.set_xlabel(f"GiB per {seq_len}-token sequence ({dtype}); green: grouped-query attention")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


DTYPES = ["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
# Each label says what the calculator divides by. Vendors sell these cards as "40GB"/"80GB", but the
# memory is binary-sized (an A100 80GB reports 81920 MiB = 80 GiB), so the budgets are in GiB.
GPU_BUDGETS_GIB = {
    "RTX 4090: 24 GiB": 24,
    "A100 40GB card: 40 GiB": 40,
    "A100/H100 80GB card: 80 GiB": 80,
    "H200 141GB card: 141 GiB": 141,
}


class MemoryCalculator:
    """Interactive KV-cache calculator (ipywidgets): size = 2 * L * H_kv * d * T * B * bytes.

    `display(calc.widget)` in a notebook. Sliders: layers, KV heads, head dim, sequence length,
    batch; dropdowns: dtype, GPU budget, and a preset that loads a model from MODEL_CONFIGS.
    Readable state: `calc.bytes` (int), `calc.text` (the label's text), `calc.fraction` (share of
    the budget), `calc.budget_text` (the budget in bytes, GiB and GB, shown under the bar).
    `calc.set(seq_len=8192, ...)` moves the widgets from code. Every number it shows lives in the
    widget and follows the controls: display the calculator itself (`calc`), never a printed copy.
    """

    def __init__(
        self,
        preset: str = "Llama-2-7B",
        seq_len: int = 4096,
        batch: int = 1,
        dtype: str = "fp16",
        budget: str = "A100/H100 80GB card: 80 GiB",
    ) -> None:
        import ipywidgets as w

        # Dropdowns answer a bad value with "Invalid selection: value not found": name it first.
        for name, value, options in (("dtype", dtype, DTYPES), ("budget", budget, list(GPU_BUDGETS_GIB))):
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"{name} must be one of {options}, got {describe(value)}")
        if not isinstance(preset, str) or preset not in MODEL_CONFIGS:
            raise KeyError(f"unknown preset {preset!r}; choose one of {list(MODEL_CONFIGS)}")
        shape = MODEL_CONFIGS[preset]
        style = {"description_width": "110px"}
        layout = w.Layout(width="460px")
        self.preset = w.Dropdown(options=list(MODEL_CONFIGS), value=preset, description="model", style=style)
        self.layers = w.IntSlider(shape.num_layers, 1, 160, description="layers", style=style, layout=layout)
        self.num_kv_heads = w.IntSlider(
            shape.num_kv_heads, 1, 128, description="KV heads", style=style, layout=layout
        )
        self.head_dim = w.IntSlider(
            shape.head_dim, 16, 512, step=16, description="head dim", style=style, layout=layout
        )
        self.seq_len = w.IntSlider(
            seq_len, 0, 131072, step=256, description="sequence length", style=style, layout=layout
        )
        self.batch = w.IntSlider(batch, 1, 256, description="batch", style=style, layout=layout)
        self.dtype = w.Dropdown(options=DTYPES, value=dtype, description="dtype", style=style)
        self.budget = w.Dropdown(options=list(GPU_BUDGETS_GIB), value=budget, description="GPU", style=style)
        # Sliders silently clamp an out-of-range value (seq_len=-5 showed 0 bytes): check it.
        for name, value in (("seq_len", seq_len), ("batch", batch)):
            _check_choice(name, getattr(self, name), value)
        self.label = w.Label()
        self.bar = w.HTML()
        self.bytes = 0
        self.fraction = 0.0
        self.text = ""
        for control in (
            self.layers,
            self.num_kv_heads,
            self.head_dim,
            self.seq_len,
            self.batch,
            self.dtype,
            self.budget,
        ):
            control.observe(self._update, names="value")
        self.preset.observe(self._load_preset, names="value")
        self.widget = w.VBox(
            [
                self.preset,
                self.layers,
                self.num_kv_heads,
                self.head_dim,
                self.seq_len,
                self.batch,
                self.dtype,
                self.budget,
                self.label,
                self.bar,
            ]
        )
        self._update()

    def _load_preset(self, change: Any = None) -> None:
        shape = MODEL_CONFIGS[self.preset.value]
        self.layers.value, self.num_kv_heads.value = shape.num_layers, shape.num_kv_heads
        self.head_dim.value = shape.head_dim  # each assignment triggers _update

    def _update(self, change: Any = None) -> None:
        self.bytes = kv_cache_bytes(
            self.layers.value,
            self.num_kv_heads.value,
            self.head_dim.value,
            self.seq_len.value,
            self.batch.value,
            self.dtype.value,
        )
        budget = GPU_BUDGETS_GIB[self.budget.value] * GiB
        self.fraction = self.bytes / budget
        per_token = kv_cache_bytes(
            self.layers.value, self.num_kv_heads.value, self.head_dim.value, 1, 1, self.dtype.value
        )
        self.text = (
            f"KV cache: {format_bytes(self.bytes)} ({self.bytes:,} bytes), "
            f"{format_bytes(per_token)} per token; {100 * self.fraction:.1f}% of {self.budget.value}"
        )
        # The budget in three units (the slip of chapter 02's section 1): 1 GB = 10**9 bytes, 1 GiB = 2**30.
        self.budget_text = f"GPU budget: {budget:,} bytes = {budget / GiB:.1f} GiB = {budget / 1e9:.1f} GB"
        self.label.value = self.text
        width = min(100.0, 100 * self.fraction)
        color = "#2a9d8f" if self.fraction <= 1 else "#e63946"
        over = "" if self.fraction <= 1 else f" does not fit: {self.fraction:.1f}x the GPU memory"
        self.bar.value = (
            f'<div style="width:440px;border:1px solid #999;height:16px">'
            f'<div style="width:{width:.1f}%;background:{color};height:16px"></div></div>'
            f"<small>{100 * self.fraction:.1f}% of {self.budget.value}{over}<br>{self.budget_text}</small>"
        )

    def set(self, **values: Any) -> MemoryCalculator:
        """Move widgets from code, e.g. `calc.set(seq_len=8192, batch=4)`; returns self."""
        for name, value in values.items():
            if name not in _CONTROLS:
                raise KeyError(
                    f"unknown control {name!r}; use {', '.join(_CONTROLS[:-1])} or {_CONTROLS[-1]}"
                )
            _check_choice(name, getattr(self, name), value)
        for name, value in values.items():  # all checked first, so a bad value moves no widget
            getattr(self, name).value = value
        return self

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget; where widgets do not render (a terminal, a static page), the text at display time.

        Display it once (`calc` as a cell's last line) and read nothing else into the cell's output: a
        `print(calc.text)` next to the widget stays at its first value while the widget's label moves on.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = f"{self.text}\n{self.budget_text}"
        return bundle


_CONTROLS = ("preset", "layers", "num_kv_heads", "head_dim", "seq_len", "batch", "dtype", "budget")


def _check_choice(name: str, control: Any, value: Any) -> None:
    """``value`` fits ``control``: an integer within a slider's range, or one of a dropdown's options."""
    if hasattr(control, "options"):
        if not isinstance(value, str) or value not in control.options:
            raise ValueError(f"{name} must be one of {list(control.options)}, got {describe(value)}")
    else:
        require_int(name, value, minimum=control.min, maximum=control.max)
