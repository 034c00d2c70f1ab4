"""tests/mutation_report.py: the per-module kill rate `make mutation` prints, and how it sorts survivors."""

from __future__ import annotations

import pytest
from mutation_equivalents import EQUIVALENT
from mutation_report import classify, parse_results, report

RESULTS = """\
    kvlib.memory.x__bytes_fraction__mutmut_1: killed
    kvlib.memory.x__bytes_fraction__mutmut_2: survived
    kvlib.memory.x_format_bytes__mutmut_7: timeout
    kvlib.memory.x__measure_cuda__mutmut_3: no tests
    kvlib.paged.manager.xǁBlockManagerǁfork__mutmut_3: killed
    kvlib.paged.manager.xǁBlockManagerǁfree__mutmut_1: not checked
"""

# A mutmut-generated module in miniature: two original functions and six survivors.
SOURCE = """
def x_f__mutmut_orig(n):
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n + 1
def x_f__mutmut_1(n):
    if n < 0:
        raise ValueError(f"XXn must be >= 0, got XX{n}")
    return n + 1
def x_f__mutmut_2(n):
    if n <= 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n + 1
def x_f__mutmut_3(n):
    if n < 0:
        raise ValueError(f"n must be >= 0, got {None}")
    return n + 1
def x_g__mutmut_orig(n, cap):
    n = require_int("n", n, minimum=0)
    return min(n, cap["n"])
def x_g__mutmut_1(n, cap):
    n = require_int("XXnXX", n, minimum=0)
    return min(n, cap["n"])
def x_g__mutmut_2(n, cap):
    n = require_int("n", n, minimum=0)
    return min(n, cap["N"])
def x_g__mutmut_3(n, cap):
    n = require_int(None, n, minimum=0)
    return min(n, cap["n"])
"""
SURVIVORS = {
    "m": {
        f"m.x_{f}__mutmut_{i}": "survived"
        for f, i in (("f", 1), ("f", 2), ("f", 3), ("g", 1), ("g", 2), ("g", 3))
    }
}


def rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines()[2:]}


def test_results_are_grouped_by_module():
    by_module = parse_results(RESULTS)
    assert set(by_module) == {"kvlib.memory", "kvlib.paged.manager"}
    assert by_module["kvlib.memory"]["kvlib.memory.x__bytes_fraction__mutmut_2"] == "survived"
    assert by_module["kvlib.paged.manager"] == {
        "kvlib.paged.manager.xǁBlockManagerǁfork__mutmut_3": "killed",
        "kvlib.paged.manager.xǁBlockManagerǁfree__mutmut_1": "not checked",
    }


def test_kill_rate_counts_timeouts_as_killed_and_untested_code_as_missed():
    results, stale = classify(parse_results(RESULTS), {}, {})
    table = rows(report(results))
    assert table["kvlib.memory"][1:3] == ["50.0%", "50.0%"]  # killed + timeout over all four counted
    assert table["kvlib.paged.manager"][1] == "100.0%"  # an unchecked mutant is not counted either way
    assert stale == []


def test_a_survivor_that_changes_only_message_text_is_a_message_mutant():
    results, _ = classify(SURVIVORS, {"m": SOURCE}, {})
    # the text of a raise, and the name a kvlib.validate check shows in its message
    assert results["m"].message == ["m.x_f__mutmut_1", "m.x_g__mutmut_1", "m.x_g__mutmut_3"]
    # a changed comparison, a changed value shown in a message, a changed dict key are real survivors
    assert results["m"].unexplained == ["m.x_f__mutmut_2", "m.x_f__mutmut_3", "m.x_g__mutmut_2"]
    assert rows(report(results))["m"][1:3] == ["0.0%", "0.0%"]  # 0 killed of 6, and of 3 non-message


def test_a_listed_equivalent_is_set_apart_only_while_its_fragment_matches():
    listed = {"m.x_f__mutmut_2": ("n <= 0", "example")}
    results, stale = classify(SURVIVORS, {"m": SOURCE}, listed)
    assert results["m"].equivalent == ["m.x_f__mutmut_2"] and stale == []
    # renumbered: the entry's fragment is not what mutant 3 changed, so it excuses nothing
    moved = {"m.x_f__mutmut_3": ("n <= 0", "example")}
    results, stale = classify(SURVIVORS, {"m": SOURCE}, moved)
    assert results["m"].equivalent == [] and len(stale) == 1 and "mutmut_3" in stale[0]


def test_an_entry_for_a_mutant_that_is_now_killed_or_gone_is_stale():
    listed = {"m.x_f__mutmut_2": ("n <= 0", "example")}
    _, stale = classify({"m": {"m.x_f__mutmut_2": "killed"}}, {"m": SOURCE}, listed)
    assert stale == ["m.x_f__mutmut_2 (killed; listed for 'n <= 0')"]
    _, stale = classify({"m": {"m.x_f__mutmut_1": "killed"}}, {"m": SOURCE}, listed)
    assert stale == ["m.x_f__mutmut_2 (absent; listed for 'n <= 0')"]
    _, stale = classify({"m": {"m.x_f__mutmut_2": "not checked"}}, {"m": SOURCE}, listed)
    assert stale == []  # no verdict yet: nothing to say


@pytest.mark.parametrize("name", sorted(EQUIVALENT))
def test_every_equivalent_entry_gives_a_fragment_and_a_reason(name):
    fragment, reason = EQUIVALENT[name]
    assert name.startswith("kvlib.") and "__mutmut_" in name
    assert fragment.strip() and len(reason.split()) >= 8, f"{name}: say what was checked, in a sentence"
