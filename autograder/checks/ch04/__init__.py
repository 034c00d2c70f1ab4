"""Checks for chapter 04 (quantizing the KV cache): int8 per token, asymmetric groups with a zero-point,
int4 packing and unpacking, per-token against per-channel error, the KIVI cache with a residual window,
the find-the-bugs quantizer, and the int8-against-int4 comparison. One module per exercise; the
notebook's test cells call the names re-exported here.

Every check builds its own inputs and compares the learner's code with kvlib's reference
(`kvlib.quant`, `kvlib.cache.quantized`). When an output is wrong it recomputes the classic wrong
variants (truncation instead of rounding, a per-tensor scale, swapped nibbles, a window that never
ages, ...) and names the one matched.
"""

from .compare import compare_rows_hidden, compare_rows_visible
from .find_bugs import bugs_found_hidden, bugs_found_visible, quantize_kv_hidden, quantize_kv_visible
from .groups import quantize_groups_hidden, quantize_groups_visible
from .int8 import quantize_int8_hidden, quantize_int8_visible
from .kivi import kivi_cache_hidden, kivi_cache_visible
from .layout import layout_errors_hidden, layout_errors_visible
from .packing import pack_int4_hidden, pack_int4_visible, unpack_int4_hidden, unpack_int4_visible

__all__ = [
    "bugs_found_hidden",
    "bugs_found_visible",
    "compare_rows_hidden",
    "compare_rows_visible",
    "kivi_cache_hidden",
    "kivi_cache_visible",
    "layout_errors_hidden",
    "layout_errors_visible",
    "pack_int4_hidden",
    "pack_int4_visible",
    "quantize_groups_hidden",
    "quantize_groups_visible",
    "quantize_int8_hidden",
    "quantize_int8_visible",
    "quantize_kv_hidden",
    "quantize_kv_visible",
    "unpack_int4_hidden",
    "unpack_int4_visible",
]
