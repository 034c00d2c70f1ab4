"""An IPython kernel with a memory cap, used for every grading run.

Launched as `python -m autograder.sandbox_kernel -f CONNECTION_FILE`. Before the kernel starts,
its writable memory is capped at `KVCOURSE_GRADER_MEMORY_MB` (default 6144 MiB), so a learner's
memory bomb raises MemoryError in that kernel instead of exhausting the machine.

RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts private writable mappings (heap, anonymous
mmap, hence every tensor), but not the large PROT_NONE address-space reservations that CUDA and
allocators make, which an address-space cap would turn into spurious failures on GPU machines.
"""

from __future__ import annotations

import os
import resource

DEFAULT_MEMORY_MB = 6144


def cap_memory() -> int:
    """Apply the memory cap from the environment; return it in bytes."""
    text = os.environ.get("KVCOURSE_GRADER_MEMORY_MB", str(DEFAULT_MEMORY_MB))
    # A negative or zero cap would make setrlimit fail or mean "no cap": refuse it by name.
    if not text.strip().isdigit() or int(text) < 1:
        raise SystemExit(f"KVCOURSE_GRADER_MEMORY_MB must be an integer number of MiB >= 1, got {text!r}")
    limit = int(text) * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return limit


if __name__ == "__main__":
    cap_memory()
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance()
