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
    "kvlib.memory.x_measure_allocations__mutmut_25": (
        "profile(activities=None, profile_memory=True)",
        "with no activities named the profiler records the CPU, plus CUDA where CUDA is present; on a "
        "CPU-only machine that is the same single activity, so the events and sums are identical.",
    ),
    "kvlib.memory.x_measure_allocations__mutmut_27": (
        "profile(profile_memory=True)",
        "the profiler's default activities are the CPU, plus CUDA where CUDA is present; on a CPU-only "
        "machine that is the same single activity, so the events and sums are identical.",
    ),
    "kvlib.memory.x__check_cache_arg__mutmut_3": (
        "A CACHE OBJECT",
        "message text held in a local before the raises that show it, upper-cased; the bad-input "
        "tables compare a message's words case-insensitively on purpose (the XX-wrapped text is killed).",
    ),
    "kvlib.memory.x__storage_key__mutmut_5": (
        "str(None)",
        "the device separates equal addresses on two devices; a CPU-only machine has one device with "
        "addresses (meta storages have none and take the other branch), so no test here can tell.",
    ),
    "kvlib.memory.x__storage_key__mutmut_6": (
        "XXno addressXX",
        "the label of an address-less storage's key only has to differ from every device name, which "
        "'XXno addressXX' does as well: the sums are the same (meta and empty tensors tested).",
    ),
    "kvlib.memory.x__storage_key__mutmut_7": (
        "NO ADDRESS",
        "the label of an address-less storage's key only has to differ from every device name, which "
        "'NO ADDRESS' does as well: the sums are the same (meta and empty tensors tested).",
    ),
    # --- kvlib.paged.sharing
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_4": (
        "seed: int=1",
        "The seed only picks the random token values of prefixes and questions, and no result depends on "
        "them: a group's prefix starts with a token unique to the group and a question with one unique to"
        " the request, so which blocks are shared is fixed by the lengths alone. Checked on 3240 (N, K, "
        "L, Q, B, cache) cases with seeds 0 and 5: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_63": (
        "random.Random(None)",
        "The generator only draws token values, and no result depends on them (each group's prefix and "
        "each request's question start with a unique token), so an unseeded generator gives the same "
        "counts. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_79": (
        "per_seq + 2",
        "The pool only has to hold every prompt unshared (N*K*per_seq blocks) and nothing is ever freed "
        "or evicted, so one more spare block changes no count. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_81": (
        "sid = 1",
        "Sequence ids and the unique question tokens derived from them only have to differ between "
        "requests; starting at 1 keeps them distinct and changes no block count. Checked on 3240 cases: "
        "identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_85": (
        "rng.randrange(32001) for _ in range(prefix_len)",
        "Prefix token values never affect the counts (sharing is decided by the group's unique first "
        "token), so a range one wider, even where it shifts later draws, changes no result. Checked on "
        "3240 cases with three seeds: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_91": (
        "100000 - g",
        "The first prefix token only has to differ between groups and from every question's first token; "
        "100000 - g does for any feasible number of groups. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_92": (
        "100001 + g",
        "The first prefix token only has to differ between groups and from every question's first token; "
        "100001 + g does as well as 100000 + g. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_96": (
        "200000 - sid",
        "The first question token only has to differ between the requests of a group; 200000 - sid is as "
        "distinct as 200000 + sid and never meets a prefix's first position. Checked on 3240 cases: "
        "identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_97": (
        "200001 + sid",
        "The first question token only has to differ between the requests of a group; shifting all of "
        "them by one keeps them distinct. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_99": (
        "rng.randrange(32001) for _ in range(question_len - 1)",
        "Question token values after the unique first one never affect which blocks are shared, so a "
        "range one wider, even where it shifts later draws, changes no count. Checked on 3240 cases with "
        "three seeds: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_109": (
        "sid -= 1",
        "Counting sequence ids down (0, -1, -2, ...) keeps ids and the question tokens derived from them "
        "distinct, and the block manager accepts any unused integer id, so no count changes. Checked on "
        "3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_shared_prefix_savings__mutmut_110": (
        "sid += 2",
        "Stepping sequence ids by two keeps ids and the question tokens derived from them distinct, so no"
        " block count changes. Checked on 3240 cases: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_49": (
        "+ width - 1",
        "The pool only bounds the manager: beams never hold more than width * ceil(total / B) blocks "
        "(shared blocks count once), and 2 * width * ceil(total / B) + width - 1 is always at least that,"
        " so no allocation fails and no count changes. Checked on 500 random (requests, width, B, vocab, "
        "temperature, seed) cases: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_50": (
        "- width + 1",
        "Beams never hold more than width * ceil(total / B) blocks, and 2 * width * ceil(total / B) - "
        "width + 1 is at least that whenever ceil(total / B) >= 1, which every request has, so the pool "
        "never runs out. Checked on 500 random cases: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_53": (
        "need = 3 * width",
        "A larger pool than the beams can ever fill (at most width * ceil(total / B) blocks in use) "
        "changes nothing: blocks are counted by use, not by pool size. Checked on 500 random cases: "
        "identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_57": (
        "+ width + 2",
        "One more spare block in a pool the beams can never fill (at most width * ceil(total / B) blocks "
        "in use) changes no count. Checked on 500 random cases: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_73": (
        "{0: 1.0}",
        "Every beam descends from the single root, so a root score of 1.0 instead of 0.0 adds the same "
        "constant to every candidate's score and keeps their order (ties stay ties, exactly so at "
        "temperature 0). Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_75": (
        "next_id = 2",
        "Sequence ids only have to be new; starting forks at id 2 instead of 1 changes no candidate order"
        " that matters (ids break only exact score ties, and they keep their relative order) and no "
        "count. Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_83": (
        "rng.gauss(1.0, temperature)",
        "Shifting every logit of a beam by 1 leaves its log-softmax unchanged (log_z shifts by the same "
        "1), so the candidate scores and the chosen beams are the same up to floating-point rounding. "
        "Checked on 500 random cases incl. temperature 0: identical results.",
    ),
    "kvlib.paged.sharing.x_beam_search_savings__mutmut_114": (
        "next_id += 2",
        "Fork ids only have to be new and increasing; stepping them by two keeps both, so ties are broken"
        " in the same order and no count changes. Checked on 500 random cases incl. temperature 0: "
        "identical results.",
    ),
    "kvlib.paged.sharing.x_parallel_sampling_savings__mutmut_61": (
        "// block_size) + 2",
        "The samples never hold more than n * ceil((P + max length) / B) blocks, so one more spare block "
        "in the pool changes no count. Checked on 400 random (requests, n, B, sigma, seed) cases: "
        "identical results.",
    ),
    # --- kvlib.paged.workload
    "kvlib.paged.workload.x_chat_workload__mutmut_30": (
        "prompt_median, inclusive=None",
        "require_number reads inclusive only as a truth value, in the check and in the message, and None "
        "is false like False: a median of 0 is refused with the same 'finite number > 0' message. Checked"
        " on 16 values (0, -0.0, negatives, tiny, nan, inf, str, None, bools) for both medians.",
    ),
    "kvlib.paged.workload.x_chat_workload__mutmut_40": (
        "output_median, inclusive=None",
        "require_number reads inclusive only as a truth value, in the check and in the message, and None "
        "is false like False: a median of 0 is refused with the same 'finite number > 0' message. Checked"
        " on 16 values (0, -0.0, negatives, tiny, nan, inf, str, None, bools) for both medians.",
    ),
    # --- kvlib.paged.manager and kvlib.paged.prefix
    "kvlib.paged.manager.xǁBlockManagerǁ_acquire__mutmut_4": (
        "assert self.cache is not None or self.cache.contains(block_id)",
        "_acquire revives a block from reference count 0 only for a prefix-cache hit, which is cached, "
        "and fork acquires blocks its parent owns (count >= 1), so with a cache both asserts pass and "
        "without one the line is never reached; only an allocator edited behind the manager's back "
        "tells them apart, and then both raise (AssertionError versus the cache's KeyError).",
    ),
    "kvlib.paged.manager.xǁBlockManagerǁ_take_fresh__mutmut_13": (
        "assert not self.cache.contains(None)",
        "The stale-entry guard never fires in the real code either: a block reaches the free list only "
        "through release, which the manager calls for uncached blocks or ones evict has just "
        "unregistered, and an adopted cache starts empty; contains(None) is always False, so both "
        "asserts pass in every reachable state.",
    ),
    "kvlib.paged.manager.xǁBlockManagerǁ_check_cache__mutmut_12": (
        "touch=None",
        "PrefixCache.match only tests touch for truth (if touch: stamp), so None behaves exactly like "
        "False: nothing is stamped and the ids are the same; the touch=True variants are killed by "
        "test_snapshot_covers_the_sequences_and_checking_changes_nothing.",
    ),
    "kvlib.paged.prefix.xǁHashPrefixCacheǁ_insert_block__mutmut_42": (
        "parent.depth + 2 if parent else 0",
        "An entry's depth is private and read only by _lru_key as the tie-break -depth between leaves "
        "with equal times; doubling every depth keeps the order of any two depths, so every eviction "
        "picks the same block (test_lru_ties_compare_depth_in_the_whole_sequence pins that order).",
    ),
    "kvlib.paged.prefix.xǁHashPrefixCacheǁ_insert_block__mutmut_43": (
        "parent.depth + 1 if parent else 1",
        "Every depth shifts by one, and depth is private and read only by _lru_key as the tie-break "
        "-depth between leaves, so the order of any two depths and with it every eviction is unchanged;"
        " depth is in no public result or state().",
    ),
    "kvlib.paged.prefix.xǁHashPrefixCacheǁunlock__mutmut_5": (
        "entry.locked = None",
        "_HashEntry.locked is private and only ever read for truth (lock, unlock, evict, locked_blocks,"
        " the leaf check, and as in_use of _check_parent_in_use), where None and False behave alike; "
        "the class has eq=False, so no comparison sees it.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁ__init____mutmut_3": (
        "RadixNode(key=None, block_ids=[], parent=None)",
        "Nothing reads the root's key: lookups and checks read the keys of children only, the root is "
        "never split or extended (split_at is 0 for it, and _insert_block skips the root when extending"
        " a run), and eviction, cached_blocks and _structure read block_ids.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁ_split__mutmut_2": (
        "assert 0 <= k < len(node.key)",
        "_split has one caller, which passes split_at = idx + 1 only when idx >= 0 and idx + 1 < "
        "len(node.block_ids) == len(node.key), so k is always in 1..len-1 and both asserts pass on "
        "every call.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁ_split__mutmut_3": (
        "assert 0 < k <= len(node.key)",
        "_split has one caller, which passes split_at = idx + 1 only when idx >= 0 and idx + 1 < "
        "len(node.block_ids) == len(node.key), so k is always in 1..len-1 and both asserts pass on "
        "every call.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁ_depth__mutmut_2": (
        "depth, up = (1, node.parent)",
        "_depth is read only by _last_block_key as the tie-break -depth between evictable leaves; "
        "starting at 1 shifts every depth by one, which keeps the order of any two, so every eviction "
        "picks the same block.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁcheck_invariants__mutmut_16": (
        "raise AssertionError(None)",
        "The block-map-out-of-sync check cannot fire: PrefixCache.check_invariants runs first and "
        "compares num_evictable (len(_node_of) - len(_in_use)) with cached minus locked, so extra or "
        "missing map entries fail there or at 'a locked block is not cached', and a moved entry fails "
        "_check_node's block-map check first; tried each such corruption by hand.",
    ),
    "kvlib.paged.prefix.xǁRadixPrefixCacheǁ_check_node__mutmut_15": (
        "raise AssertionError(None)",
        "The in-use-prefix check cannot fire: inside a run each block's parent is the block before it, "
        "so an idle block before an in-use one is an in-use block with an idle parent, which "
        "PrefixCache.check_invariants (run first) reports as 'in use but its parent is not'; tried by "
        "hand.",
    ),
}
