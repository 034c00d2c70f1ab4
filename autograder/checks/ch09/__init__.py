"""Checks for chapter 09 (interview preparation): sizing drills, the decode roofline, diagnosis scenarios
and memory hygiene."""

from .capacity import (
    max_requests_per_gpu_hidden,
    max_requests_per_gpu_visible,
    quantized_kv_bytes_hidden,
    quantized_kv_bytes_visible,
)
from .diagnosis import diagnoses_hidden, diagnoses_visible
from .hygiene import generate_without_graph_hidden, generate_without_graph_visible
from .roofline import decode_step_costs_hidden, decode_step_costs_visible
from .sizing import (
    gpus_needed_hidden,
    gpus_needed_visible,
    kv_gib_hidden,
    kv_gib_visible,
    prefix_cached_bytes_hidden,
    prefix_cached_bytes_visible,
)

__all__ = [
    "decode_step_costs_hidden",
    "decode_step_costs_visible",
    "diagnoses_hidden",
    "diagnoses_visible",
    "generate_without_graph_hidden",
    "generate_without_graph_visible",
    "gpus_needed_hidden",
    "gpus_needed_visible",
    "kv_gib_hidden",
    "kv_gib_visible",
    "max_requests_per_gpu_hidden",
    "max_requests_per_gpu_visible",
    "prefix_cached_bytes_hidden",
    "prefix_cached_bytes_visible",
    "quantized_kv_bytes_hidden",
    "quantized_kv_bytes_visible",
]
