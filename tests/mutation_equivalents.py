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
    # --- kvlib.paged.simulate
    "kvlib.paged.simulate.x_simulate_stream__mutmut_42": (
        "if rid not in running:\n                break",
        "Preemption victims are always taken from the end of `running` (admission order) and nothing "
        "joins it during the grow loop, so the requests of the loop's snapshot that are no longer running"
        " form a suffix of it: stopping at the first one (break) skips exactly the ones `continue` would "
        "skip. Checked on 400 random paged/contiguous streams (47 with two or more preemptions): "
        "identical results and traces.",
    ),
    "kvlib.paged.simulate.x_simulate_stream__mutmut_82": (
        "kept.pop(None, None)",
        "A readmitted request's `kept` entry is only read while it waits again, and it can only wait "
        "again after a new preemption, which overwrites the entry first; leaving the stale entry in place"
        " changes no token count. Checked on 400 random streams: identical results and traces.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_4": (
        "seed: int=1",
        "The seed only picks the random token values of prefixes and questions, and no result depends on "
        "them: a group's prefix starts with a token unique to the group and a question with one unique to"
        " the request, so which blocks are shared is fixed by the lengths alone. Checked on 3240 (N, K, "
        "L, Q, B, cache) cases with seeds 0 and 5: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_63": (
        "random.Random(None)",
        "The generator only draws token values, and no result depends on them (each group's prefix and "
        "each request's question start with a unique token), so an unseeded generator gives the same "
        "counts. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_79": (
        "per_seq + 2",
        "The pool only has to hold every prompt unshared (N*K*per_seq blocks) and nothing is ever freed "
        "or evicted, so one more spare block changes no count. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_81": (
        "sid = 1",
        "Sequence ids and the unique question tokens derived from them only have to differ between "
        "requests; starting at 1 keeps them distinct and changes no block count. Checked on 3240 cases: "
        "identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_85": (
        "rng.randrange(32001) for _ in range(prefix_len)",
        "Prefix token values never affect the counts (sharing is decided by the group's unique first "
        "token), so a range one wider, even where it shifts later draws, changes no result. Checked on "
        "3240 cases with three seeds: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_91": (
        "100000 - g",
        "The first prefix token only has to differ between groups and from every question's first token; "
        "100000 - g does for any feasible number of groups. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_92": (
        "100001 + g",
        "The first prefix token only has to differ between groups and from every question's first token; "
        "100001 + g does as well as 100000 + g. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_96": (
        "200000 - sid",
        "The first question token only has to differ between the requests of a group; 200000 - sid is as "
        "distinct as 200000 + sid and never meets a prefix's first position. Checked on 3240 cases: "
        "identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_97": (
        "200001 + sid",
        "The first question token only has to differ between the requests of a group; shifting all of "
        "them by one keeps them distinct. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_99": (
        "rng.randrange(32001) for _ in range(question_len - 1)",
        "Question token values after the unique first one never affect which blocks are shared, so a "
        "range one wider, even where it shifts later draws, changes no count. Checked on 3240 cases with "
        "three seeds: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_109": (
        "sid -= 1",
        "Counting sequence ids down (0, -1, -2, ...) keeps ids and the question tokens derived from them "
        "distinct, and the block manager accepts any unused integer id, so no count changes. Checked on "
        "3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_shared_prefix_savings__mutmut_110": (
        "sid += 2",
        "Stepping sequence ids by two keeps ids and the question tokens derived from them distinct, so no"
        " block count changes. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_49": (
        "+ width - 1",
        "The pool only bounds the manager: beams never hold more than width * ceil(total / B) blocks "
        "(shared blocks count once), and 2 * width * ceil(total / B) + width - 1 is always at least that,"
        " so no allocation fails and no count changes. Checked on 500 random (requests, width, B, vocab, "
        "temperature, seed) cases: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_50": (
        "- width + 1",
        "Beams never hold more than width * ceil(total / B) blocks, and 2 * width * ceil(total / B) - "
        "width + 1 is at least that whenever ceil(total / B) >= 1, which every request has, so the pool "
        "never runs out. Checked on 500 random cases: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_53": (
        "need = 3 * width",
        "A larger pool than the beams can ever fill (at most width * ceil(total / B) blocks in use) "
        "changes nothing: blocks are counted by use, not by pool size. Checked on 500 random cases: "
        "identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_57": (
        "+ width + 2",
        "One more spare block in a pool the beams can never fill (at most width * ceil(total / B) blocks "
        "in use) changes no count. Checked on 500 random cases: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_73": (
        "{0: 1.0}",
        "Every beam descends from the single root, so a root score of 1.0 instead of 0.0 adds the same "
        "constant to every candidate's score and keeps their order (ties stay ties, exactly so at "
        "temperature 0). Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_75": (
        "next_id = 2",
        "Sequence ids only have to be new; starting forks at id 2 instead of 1 changes no candidate order"
        " that matters (ids break only exact score ties, and they keep their relative order) and no "
        "count. Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_83": (
        "rng.gauss(1.0, temperature)",
        "Shifting every logit of a beam by 1 leaves its log-softmax unchanged (log_z shifts by the same "
        "1), so the candidate scores and the chosen beams are the same up to floating-point rounding. "
        "Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.simulate.x_beam_search_savings__mutmut_114": (
        "next_id += 2",
        "Fork ids only have to be new and increasing; stepping them by two keeps both, so ties are broken"
        " in the same order and no count changes. Checked on 500 random cases incl. temperature 0: "
        "identical results.",
    ),
    "kvlib.paged.simulate.x_parallel_sampling_savings__mutmut_61": (
        "// block_size) + 2",
        "The samples never hold more than n * ceil((P + max length) / B) blocks, so one more spare block "
        "in the pool changes no count. Checked on 400 random (requests, n, B, sigma, seed) cases: "
        "identical results.",
    ),
    "kvlib.paged.simulate.x_chat_workload__mutmut_30": (
        "prompt_median, inclusive=None",
        "require_number reads inclusive only as a truth value, in the check and in the message, and None "
        "is false like False: a median of 0 is refused with the same 'finite number > 0' message. Checked"
        " on 16 values (0, -0.0, negatives, tiny, nan, inf, str, None, bools) for both medians.",
    ),
    "kvlib.paged.simulate.x_chat_workload__mutmut_40": (
        "output_median, inclusive=None",
        "require_number reads inclusive only as a truth value, in the check and in the message, and None "
        "is false like False: a median of 0 is refused with the same 'finite number > 0' message. Checked"
        " on 16 values (0, -0.0, negatives, tiny, nan, inf, str, None, bools) for both medians.",
    ),
}
