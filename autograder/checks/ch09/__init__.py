"""Checks for chapter 09 (interview preparation): sizing drills, the decode roofline, diagnosis scenarios
and memory hygiene."""

import importlib

# name -> module; imported on first use while the chapter is being assembled.
_HOMES = {
    "kv_gib": "sizing",
    "gpus_needed": "sizing",
    "prefix_cached_bytes": "sizing",
    "quantized_kv_bytes": "capacity",
    "max_requests_per_gpu": "capacity",
    "decode_step_costs": "roofline",
    "diagnoses": "diagnosis",
    "generate_without_graph": "hygiene",
}


def __getattr__(attr: str):
    for name, module in _HOMES.items():
        if attr in (f"{name}_visible", f"{name}_hidden"):
            return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(attr)
