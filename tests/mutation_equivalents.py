"""Surviving mutants of kvlib that no test can tell from the real code, each with the reason.

`tests/mutation_report.py` leaves these out of the non-equivalent kill rate. Key: the mutant's name
as `mutmut results` prints it; value: (a fragment of the mutated code, as `ast.unparse` writes it,
that the original does not contain; why no observable behaviour changes). The fragment catches
renumbering: when a function changes, mutmut renumbers its mutants and the report marks the entry
stale instead of excusing a different mutant. Before adding an entry, try to kill the mutant; an
entry is a claim that no input can, so say what was checked.
"""

from __future__ import annotations

EQUIVALENT: dict[str, tuple[str, str]] = {
    # --- kvlib.memory
    "kvlib.memory.x_cuda_memory_delta__mutmut_8": (
        "need_cuda=None",
        "require_device reads `available` only as a truth value, and None is false like False: "
        "cuda_memory_delta('cuda') on a machine without CUDA still answers None (tested).",
    ),
    "kvlib.memory.x__check_cache_arg__mutmut_2": (
        "XXa cache object",
        "message text held in a local before the raises that show it; the bad-input row checks the "
        "phrase, which the XX-wrapped text still contains (the None mutant of it is killed).",
    ),
}
