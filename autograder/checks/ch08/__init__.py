"""Checks for chapter 08 (serving): request metrics, percentiles, preemption, the scheduler's step and
the KV cache per GPU under tensor parallelism."""

from .metrics import percentile_hidden, percentile_visible, request_metrics_hidden, request_metrics_visible
from .scheduler import preempt_hidden, preempt_visible, schedule_step_hidden, schedule_step_visible
from .tp import kv_bytes_per_gpu_hidden, kv_bytes_per_gpu_visible

__all__ = [
    "kv_bytes_per_gpu_hidden",
    "kv_bytes_per_gpu_visible",
    "percentile_hidden",
    "percentile_visible",
    "preempt_hidden",
    "preempt_visible",
    "request_metrics_hidden",
    "request_metrics_visible",
    "schedule_step_hidden",
    "schedule_step_visible",
]
