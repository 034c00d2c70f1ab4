"""Plots and widgets for the notebooks (chapters 01, 02 and 09).

Plot functions take measured numbers (never compute them) and return the matplotlib Figure, so
a notebook cell both shows the figure and can save or test it. `MemoryCalculator` is the
ipywidgets KV-cache calculator: sliders for the formula's inputs, a live size and a bar against
a GPU memory budget; chapter 09 grows it with the attention kind (GQA or MLA), quantized KV with
its scales, paging waste and tensor parallelism. Its current result is readable from Python
(`.bytes`, `.text`, `.per_gpu_bytes`, ...), which is how tests (and a browser test that moves a
slider) check that the kernel sees the change.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from kvlib.cache.mla import DEEPSEEK_V2_MLA, mla_kv_bytes_per_token
from kvlib.memory import (
    MODEL_CONFIGS,
    GiB,
    ModelShape,
    bytes_per_element,
    format_bytes,
    kv_cache_bytes,
    kv_heads_per_gpu,
    quantized_kv_cache_bytes,
)
from kvlib.validate import describe, require_bool, require_int, require_number


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
# Quantized KV formats of the calculator's dtype menu: integer codes plus, for every group, a scale and a
# minimum in fp16 (KIVI's "kivi" scheme, kvlib.cache.quantized.QuantizedKVCache). Plain "int8"/"int4"
# above are the formula's idealisation: codes alone, no scales.
QUANTIZED_DTYPES = {"int8 + scales": 8, "int4 + scales": 4}
SCALE_DTYPE = "fp16"
GROUP_SIZES = [8, 16, 32, 64, 128]
# Block size 1 is the formula itself (every slot holds a token); vLLM's default is 16.
BLOCK_SIZES = [1, 8, 16, 32, 64, 128, 256]
ATTENTION_KINDS = ["MHA/GQA", "MLA"]
# A preset outside MODEL_CONFIGS (no ModelShape describes a latent cache): DeepSeek-V2's MLA, with its
# 128 heads of 128 on the KV-heads sliders, which is its MHA twin when the attention is set to MHA/GQA.
MLA_PRESET = "DeepSeek-V2 (MLA)"
PRESETS = [*MODEL_CONFIGS, MLA_PRESET]
# Each label says what the calculator divides by. Vendors sell these cards as "40GB"/"80GB", but the
# memory is binary-sized (an A100 80GB reports 81920 MiB = 80 GiB), so the budgets are in GiB.
GPU_BUDGETS_GIB = {
    "RTX 4090: 24 GiB": 24,
    "A100 40GB card: 40 GiB": 40,
    "A100/H100 80GB card: 80 GiB": 80,
    "H200 141GB card: 141 GiB": 141,
}


def _preset_values(preset: str) -> dict[str, Any]:
    """The slider values a preset loads: its shape, and the attention kind it caches with."""
    if preset == MLA_PRESET:
        mla = DEEPSEEK_V2_MLA
        return {
            "layers": mla.num_layers,
            "num_heads": mla.num_heads,
            "num_kv_heads": mla.num_heads,
            "head_dim": mla.head_dim,
            "attention": "MLA",
            "kv_latent_dim": mla.kv_latent_dim,
            "rope_dim": mla.rope_dim,
        }
    shape = MODEL_CONFIGS[preset]
    return {
        "layers": shape.num_layers,
        "num_heads": shape.num_heads,
        "num_kv_heads": shape.num_kv_heads,
        "head_dim": shape.head_dim,
        "attention": "MHA/GQA",
    }


class MemoryCalculator:
    """Interactive KV-cache calculator (ipywidgets): size = 2 * L * H_kv * d * T * B * bytes, and beyond.

    `display(calc.widget)` (or `calc` as a cell's last line) in a notebook. Sliders: layers, KV heads,
    head dim, sequence length, batch; dropdowns: dtype, GPU budget, and a preset that loads a model from
    MODEL_CONFIGS (or DeepSeek-V2's latent attention). Under "more" (chapter 09), each control's default
    leaves the chapter 02 numbers unchanged:

    - `attention`: "MHA/GQA" caches `num_kv_heads` key and value heads (MHA when they equal the query
      heads `num_heads`, GQA when fewer); "MLA" caches one latent of `kv_latent_dim` (d_c) plus a
      decoupled RoPE key of `rope_dim` (d_R) per token and layer (`kvlib.cache.mla.mla_kv_bytes_per_token`);
    - dtype "int8 + scales" / "int4 + scales": codes plus an fp16 scale and minimum per group of
      `group_size` (`kvlib.memory.quantized_kv_cache_bytes`, KIVI's layout: keys per channel over
      groups of G tokens, values per token over groups of G channels, no full-precision window, so only
      the tokens after the last whole key group stay fp16); under MLA the latent is quantized per token
      in groups of G channels;
    - `block_size`: paged blocks; every sequence rounds its T tokens up to whole blocks, and the empty
      slots of its last block are waste (`calc.waste_bytes`, `calc.waste_fraction`);
    - `tp`: tensor parallelism over `tp` GPUs (`kvlib.memory.kv_heads_per_gpu`): each GPU keeps
      `max(1, num_kv_heads / tp)` KV heads; MLA's latent, shared by every head, is kept whole on every
      GPU. A split engines refuse is shown as a message (`calc.tp_message`), not raised.

    Readable state: `calc.bytes` (int, the whole cache as allocated, one copy of every head, paging
    waste included), `calc.data_bytes` (the bytes that hold tokens), `calc.waste_bytes`,
    `calc.waste_fraction`, `calc.token_bytes` (bytes a token adds, all layers; averaged over a group
    when quantized), `calc.kv_heads_per_gpu` and `calc.per_gpu_bytes` (None when the split is
    impossible, or for MLA's heads), `calc.fraction` (share of one GPU's budget that GPU's part takes;
    None for an impossible split), `calc.text` (the label's text), `calc.details` (one line per control
    group, shown under the label) and `calc.budget_text` (the budget in bytes, GiB and GB, under the
    bar). `calc.set(seq_len=8192, tp=8, ...)` moves the widgets from code. Every number it shows lives
    in the widget and follows the controls: display the calculator itself (`calc`), never a printed copy.
    """

    def __init__(
        self,
        preset: str = "Llama-2-7B",
        seq_len: int = 4096,
        batch: int = 1,
        dtype: str = "fp16",
        budget: str = "A100/H100 80GB card: 80 GiB",
        show_all: bool = False,
    ) -> None:
        import ipywidgets as w

        # Dropdowns answer a bad value with "Invalid selection: value not found": name it first.
        dtypes = DTYPES + list(QUANTIZED_DTYPES)
        for name, value, options in (("dtype", dtype, dtypes), ("budget", budget, list(GPU_BUDGETS_GIB))):
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"{name} must be one of {options}, got {describe(value)}")
        if not isinstance(preset, str) or preset not in PRESETS:
            raise KeyError(f"unknown preset {preset!r}; choose one of {PRESETS}")
        show_all = require_bool("show_all", show_all)
        loaded = _preset_values(preset)
        style = {"description_width": "110px"}
        layout = w.Layout(width="460px")

        def slider(value: int, low: int, high: int, description: str, step: int = 1) -> Any:
            return w.IntSlider(
                value, low, high, step=step, description=description, style=style, layout=layout
            )

        def dropdown(options: list, value: Any, description: str) -> Any:
            return w.Dropdown(options=options, value=value, description=description, style=style)

        self.preset = dropdown(PRESETS, preset, "model")
        self.layers = slider(loaded["layers"], 1, 160, "layers")
        self.num_kv_heads = slider(loaded["num_kv_heads"], 1, 128, "KV heads")
        self.head_dim = slider(loaded["head_dim"], 16, 512, "head dim", step=16)
        self.seq_len = slider(seq_len, 0, 131072, "sequence length", step=256)
        self.batch = slider(batch, 1, 256, "batch")
        self.dtype = dropdown(dtypes, dtype, "dtype")
        self.budget = dropdown(list(GPU_BUDGETS_GIB), budget, "GPU")
        # The controls chapter 09 adds; their defaults leave chapter 02's numbers as they were.
        self.num_heads = slider(loaded["num_heads"], 1, 256, "query heads")
        self.attention = dropdown(ATTENTION_KINDS, loaded["attention"], "attention")
        self.kv_latent_dim = slider(loaded.get("kv_latent_dim", 512), 16, 4096, "MLA latent d_c", step=16)
        self.rope_dim = slider(loaded.get("rope_dim", 64), 0, 512, "MLA RoPE d_R", step=16)
        self.group_size = dropdown(GROUP_SIZES, 32, "quant group")
        self.block_size = dropdown(BLOCK_SIZES, 1, "block size")
        self.tp = slider(1, 1, 64, "tensor parallel")
        # Sliders silently clamp an out-of-range value (seq_len=-5 showed 0 bytes): check it.
        for name, value in (("seq_len", seq_len), ("batch", batch)):
            _check_value(name, getattr(self, name), value)
        self.label = w.Label()
        self.details = w.HTML()
        self.bar = w.HTML()
        self._set_state_defaults()
        for name in _CONTROLS[1:]:
            getattr(self, name).observe(self._update, names="value")
        self.preset.observe(self._load_preset, names="value")
        self.more = w.Accordion(
            children=[
                w.VBox(
                    [
                        self.attention,
                        self.num_heads,
                        self.kv_latent_dim,
                        self.rope_dim,
                        self.group_size,
                        self.block_size,
                        self.tp,
                    ]
                )
            ],
            titles=("more: GQA or MLA, quantized KV, paging, tensor parallelism",),
            selected_index=0 if show_all else None,
        )
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
                self.more,
                self.label,
                self.details,
                self.bar,
            ]
        )
        self._update()

    def _set_state_defaults(self) -> None:
        self.bytes = self.data_bytes = self.waste_bytes = 0
        self.waste_fraction = 0.0
        self.token_bytes: float = 0
        self.kv_heads_per_gpu: int | None = None
        self.per_gpu_bytes: int | None = 0
        self.fraction: float | None = 0.0
        self.tp_message = self.text = self.details_text = self.budget_text = ""

    def _load_preset(self, change: Any = None) -> None:
        for name, value in _preset_values(self.preset.value).items():
            getattr(self, name).value = value  # each assignment triggers _update

    # --- the numbers ---------------------------------------------------------------------------------

    def _cache_bytes(self, kv_heads: int, seq_len: int, batch: int | None = None) -> int:
        """Bytes of `batch` (default: the slider's) sequences of `seq_len` tokens with `kv_heads` KV heads
        (MHA/GQA; MLA keeps its latent whatever the heads)."""
        layers, dtype = self.layers.value, self.dtype.value
        batch = self.batch.value if batch is None else batch
        bits, group = QUANTIZED_DTYPES.get(dtype), self.group_size.value
        if self.attention.value == "MLA":
            latent, rope = self.kv_latent_dim.value, self.rope_dim.value
            if bits is None:
                return mla_kv_bytes_per_token(layers, latent, rope, dtype) * seq_len * batch
            # One vector per token, quantized per token in groups of channels, as KIVI's values are: the
            # formula's value half (with per-token keys both halves are the same bytes).
            both = quantized_kv_cache_bytes(
                layers, 1, latent + rope, seq_len, batch, bits, group, 0, 0, SCALE_DTYPE, "kivi", "per_token"
            )
            return both // 2
        if bits is None:
            return kv_cache_bytes(layers, kv_heads, self.head_dim.value, seq_len, batch, dtype)
        return quantized_kv_cache_bytes(
            layers, kv_heads, self.head_dim.value, seq_len, batch, bits, group, 0, 0, SCALE_DTYPE
        )  # residual 0, no sinks; the default scheme and layout are KIVI's: "kivi", keys "per_channel"

    def _token_bytes(self) -> float:
        """Bytes one token adds, all layers: the formula at one token, or a whole quantized group / G
        (a quantized token's share of its group's scales: the cost per token once the cache is long)."""
        if self.dtype.value not in QUANTIZED_DTYPES:
            return self._cache_bytes(self.num_kv_heads.value, 1, 1)
        group = self.group_size.value
        return self._cache_bytes(self.num_kv_heads.value, group, 1) / group

    def _shape(self) -> ModelShape:
        """The sliders as a ModelShape (kv_heads_per_gpu's input), named after the preset they match."""
        values = {
            name: getattr(self, name).value for name in ("layers", "num_heads", "num_kv_heads", "head_dim")
        }
        preset = _preset_values(self.preset.value)
        same = all(preset[name] == value for name, value in values.items())
        return ModelShape(
            self.preset.value if same else "the sliders' model",
            values["layers"],
            values["num_heads"],
            values["num_kv_heads"],
            values["head_dim"],
            values["num_heads"] * values["head_dim"],
            max(1, self.seq_len.value),
            0.0,
            "MemoryCalculator sliders",
        )

    def _split(self, padded: int) -> None:
        """Per-GPU numbers under tensor parallelism, or the reason the split is impossible."""
        tp, shape = self.tp.value, self._shape()
        self.kv_heads_per_gpu = self.per_gpu_bytes = None
        self.tp_message = ""
        try:
            if self.attention.value == "MLA":  # query heads must split; the latent is kept whole
                kv_heads_per_gpu(replace(shape, num_kv_heads=shape.num_heads), tp)
                self.per_gpu_bytes = self.bytes
            else:
                self.kv_heads_per_gpu = kv_heads_per_gpu(shape, tp)
                self.per_gpu_bytes = self._cache_bytes(self.kv_heads_per_gpu, padded)
        except ValueError as error:
            self.tp_message = f"{error}: engines refuse this split"

    def _update(self, change: Any = None) -> None:
        seq_len, block = self.seq_len.value, self.block_size.value
        padded = -(-seq_len // block) * block  # every sequence holds whole blocks
        self.data_bytes = self._cache_bytes(self.num_kv_heads.value, seq_len)
        self.bytes = self._cache_bytes(self.num_kv_heads.value, padded)
        self.waste_bytes = self.bytes - self.data_bytes
        self.waste_fraction = self.waste_bytes / self.bytes if self.bytes else 0.0
        self.token_bytes = self._token_bytes()
        self._split(padded)
        budget = GPU_BUDGETS_GIB[self.budget.value] * GiB
        self.fraction = None if self.per_gpu_bytes is None else self.per_gpu_bytes / budget
        self.text = (
            f"KV cache: {format_bytes(self.bytes)} ({self.bytes:,} bytes), "
            f"{format_bytes(self.token_bytes)} per token; "
        )
        if self.tp_message:
            self.text += f"tp={self.tp.value}: {self.tp_message}"
        elif self.tp.value > 1:
            self.text += (
                f"per GPU (tp={self.tp.value}): {format_bytes(self.per_gpu_bytes)}, "
                f"{100 * self.fraction:.1f}% of {self.budget.value}"
            )
        else:
            self.text += f"{100 * self.fraction:.1f}% of {self.budget.value}"
        self.details_text = "\n".join(
            [self._attention_line(), self._storage_line(), self._paging_line(padded), self._tp_line()]
        )
        # The budget in three units (the slip of chapter 02's section 1): 1 GB = 10**9 bytes, 1 GiB = 2**30.
        self.budget_text = f"GPU budget: {budget:,} bytes = {budget / GiB:.1f} GiB = {budget / 1e9:.1f} GB"
        self.label.value = self.text
        self.details.value = "<small>" + "<br>".join(
            html.escape(line) for line in self.details_text.split("\n")
        )
        self.details.value += "</small>"
        self._draw_bar()

    def _draw_bar(self) -> None:
        if self.fraction is None:
            self.bar.value = (
                f'<div style="width:440px;border:1px solid #e63946;height:16px"></div>'
                f"<small>{html.escape(self.tp_message)}<br>{self.budget_text}</small>"
            )
            return
        width = min(100.0, 100 * self.fraction)
        color = "#2a9d8f" if self.fraction <= 1 else "#e63946"
        over = "" if self.fraction <= 1 else f" does not fit: {self.fraction:.1f}x the GPU memory"
        whose = "" if self.tp.value == 1 else " per GPU"
        self.bar.value = (
            f'<div style="width:440px;border:1px solid #999;height:16px">'
            f'<div style="width:{width:.1f}%;background:{color};height:16px"></div></div>'
            f"<small>{100 * self.fraction:.1f}% of {self.budget.value}{whose}{over}"
            f"<br>{self.budget_text}</small>"
        )

    # --- the lines under the label -------------------------------------------------------------------

    def _attention_line(self) -> str:
        heads, kv, dim = self.num_heads.value, self.num_kv_heads.value, self.head_dim.value
        twin = 2 * kv * dim
        if self.attention.value == "MLA":
            width = self.kv_latent_dim.value + self.rope_dim.value
            return (
                f"attention: MLA, latent {self.kv_latent_dim.value} + RoPE key {self.rope_dim.value} = "
                f"{width:,} numbers per token and layer for keys and values together (with {kv} KV heads "
                f"of {dim}: 2 x {kv} x {dim} = {twin:,}, {twin / width:.1f}x more)"
            )
        if kv == heads:
            kind = f"MHA, {kv} KV heads = query heads"
        elif kv == 1:
            kind = f"MQA, 1 KV head for {heads} query heads"
        elif kv < heads and heads % kv == 0:
            kind = f"GQA, {kv} KV heads for {heads} query heads ({heads // kv} per group)"
        else:
            kind = f"{kv} KV heads for {heads} query heads (no even grouping: check the sliders)"
        return f"attention: {kind}: 2 x {kv} x {dim} = {twin:,} numbers per token and layer"

    def _storage_line(self) -> str:
        dtype = self.dtype.value
        bits = QUANTIZED_DTYPES.get(dtype)
        if bits is None:
            return f"storage: {dtype}, {bytes_per_element(dtype):g} bytes per number, no scales"
        group = self.group_size.value
        layout = (
            f"the latent per token in groups of {group} channels"
            if self.attention.value == "MLA"
            else f"keys per channel over {group} tokens, values per token over {group} channels (KIVI)"
        )
        plain = self._plain_bytes(SCALE_DTYPE)
        ratio = f", {self.data_bytes / plain:.2f}x the {SCALE_DTYPE} cache" if plain else ""
        return (
            f"storage: {bits}-bit codes + an {SCALE_DTYPE} scale and minimum per group: {layout}; "
            f"{8 * self.token_bytes / self._numbers_per_token():.2f} bits per number{ratio}"
        )

    def _numbers_per_token(self) -> int:
        if self.attention.value == "MLA":
            return self.layers.value * (self.kv_latent_dim.value + self.rope_dim.value)
        return 2 * self.layers.value * self.num_kv_heads.value * self.head_dim.value

    def _plain_bytes(self, dtype: str) -> int:
        """The same tokens in `dtype`, unquantized: what the quantized cache is compared with."""
        return (
            math.ceil(self._numbers_per_token() * bytes_per_element(dtype))
            * self.seq_len.value
            * (self.batch.value)
        )

    def _paging_line(self, padded: int) -> str:
        block, seq_len = self.block_size.value, self.seq_len.value
        if block == 1:
            return "paging: block size 1, every slot holds a token (the formula)"
        return (
            f"paging: blocks of {block}: {seq_len:,} tokens take {padded // block:,} blocks = "
            f"{padded:,} slots per sequence; {padded - seq_len} empty slots x {self.batch.value} sequences = "
            f"{format_bytes(self.waste_bytes)} allocated for no token ({100 * self.waste_fraction:.1f}%)"
        )

    def _tp_line(self) -> str:
        tp = self.tp.value
        if self.tp_message:
            return f"tensor parallelism: tp={tp}: {self.tp_message}"
        if tp == 1:
            return "tensor parallelism: off (tp=1), one GPU holds the whole cache"
        if self.attention.value == "MLA":
            return (
                f"tensor parallelism: tp={tp}: MLA's latent is shared by every head, so each of the {tp} "
                f"GPUs keeps all of it ({format_bytes(self.bytes)}); SGLang's DP attention avoids the copies"
            )
        heads, kv = self.kv_heads_per_gpu, self.num_kv_heads.value
        each = format_bytes(self.per_gpu_bytes)
        line = f"tensor parallelism: tp={tp}: {heads} KV head(s) per GPU, {each} each"
        if tp > kv:
            together = tp * self.per_gpu_bytes
            line += (
                f"; {kv} KV head(s) for {tp} GPUs: each keeps its own copy, together {format_bytes(together)}"
            )
            line += f", {tp // kv}x the cache"
        return line

    def set(self, **values: Any) -> MemoryCalculator:
        """Move widgets from code, e.g. `calc.set(seq_len=8192, batch=4, tp=8)`; returns self.

        Every value is checked before any widget moves (KeyError for an unknown control; ValueError or
        TypeError naming the control for a bad value), and a preset is loaded first, so that the other
        values given with it override what it loads.
        """
        for name, value in values.items():
            if name not in _CONTROLS:
                raise KeyError(
                    f"unknown control {name!r}; use {', '.join(_CONTROLS[:-1])} or {_CONTROLS[-1]}"
                )
            _check_value(name, getattr(self, name), value)
        if "preset" in values:
            self.preset.value = values["preset"]
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


_CONTROLS = (
    "preset", "layers", "num_kv_heads", "head_dim", "seq_len", "batch", "dtype", "budget",
    "num_heads", "attention", "kv_latent_dim", "rope_dim", "group_size", "block_size", "tp",
)  # fmt: skip


def _check_value(name: str, control: Any, value: Any) -> None:
    """``value`` fits ``control``: an integer within a slider's range, or one of a dropdown's options (of
    the options' type: True is not the block size 1). RoPE rotates pairs of channels, so d_R is even."""
    if hasattr(control, "options"):
        options = list(control.options)
        kind = str if isinstance(options[0], str) else int
        if type(value) is not kind or value not in options:  # type(): bool is an int subclass
            raise ValueError(f"{name} must be one of {options}, got {describe(value)}")
    else:
        require_int(name, value, minimum=control.min, maximum=control.max)
    if name == "rope_dim" and value % 2:
        raise ValueError(f"rope_dim must be even (RoPE rotates pairs of channels), got {value}")
