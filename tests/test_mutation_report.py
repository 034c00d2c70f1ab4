"""tests/mutation_report.py: the per-module kill rate `make mutation` prints."""

from __future__ import annotations

from mutation_report import module_counts, report

RESULTS = """\
    kvlib.memory.x__bytes_fraction__mutmut_1: killed
    kvlib.memory.x__bytes_fraction__mutmut_2: survived
    kvlib.memory.x_format_bytes__mutmut_7: timeout
    kvlib.memory.x__measure_cuda__mutmut_3: no tests
    kvlib.paged.manager.xǁBlockManagerǁfork__mutmut_3: killed
    kvlib.paged.manager.xǁBlockManagerǁfree__mutmut_1: not checked
"""


def test_counts_are_grouped_by_module_and_status():
    counts = module_counts(RESULTS)
    assert set(counts) == {"kvlib.memory", "kvlib.paged.manager"}
    assert counts["kvlib.memory"] == {"killed": 1, "survived": 1, "timeout": 1, "no tests": 1}
    assert counts["kvlib.paged.manager"] == {"killed": 1, "not checked": 1}


def test_kill_rate_counts_timeouts_as_killed_and_untested_code_as_missed():
    rows = {line.split()[0]: line.split() for line in report(module_counts(RESULTS)).splitlines()[2:]}
    assert rows["kvlib.memory"][1] == "50.0%"  # killed + timeout over killed, timeout, survived, no tests
    assert rows["kvlib.paged.manager"][1] == "100.0%"  # an unchecked mutant is not counted either way
