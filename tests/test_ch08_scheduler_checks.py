"""Chapter 08's preempt and schedule_step checks, beyond what tests/test_checks.py runs for every exercise.

schedule_step is graded by replaying workloads on the learner's step and kvlib's, naming the mistake when
the learner's step is that of a classic wrong policy (``scheduler.policy`` with one of ``FLAWS``). These
tests hold that machinery to account: the flawless policy is kvlib's step on every state the hidden walks
reach (so a diagnosis never names a mistake kvlib makes too), the hidden walks show every flaw (each would
fail the hidden check, naming itself), the copies handed to the learner share nothing with kvlib's, and the
parts no mutant in autograder/mutants/ reaches (wrong return types, a call to kvlib through the scheduler,
a step that raises) fail with a message that says why.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path

import pytest
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch08 import scheduler
from autograder.harness import namespace_before, run_exercise, solution_sources

pytestmark = [pytest.mark.ch08, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "08_serving.ipynb"


class _Survey(scheduler.Walk):
    """A hidden walk on kvlib alone that records, at every step, which flaws change the outcome."""

    def __init__(self, *args, seen: Counter, **kwargs):
        super().__init__(None, *args, **kwargs)
        self.seen = seen

    def reference_step(self):
        from kvlib.serve.scheduler import schedule_step

        before, start = self.sched, len(self.sched.memory.calls)
        ref = scheduler.twin_of(before)
        plan = schedule_step(ref)
        want = scheduler._outcome(ref, scheduler._plan_lists(plan), start)
        twin = scheduler.twin_of(before)
        assert scheduler._outcome(twin, scheduler._plan_lists(scheduler.policy(twin)), start) == want, (
            f"{self.where()}: the flawless policy differs from kvlib's step"
        )
        for flaw in scheduler.FLAWS:
            twin = scheduler.twin_of(before)
            try:
                flawed = scheduler._plan_lists(scheduler.policy(twin, flaw))
                differs = scheduler._outcome(twin, flawed, start) != want
            except Exception:  # noqa: BLE001 - the memory refused the flawed policy's call: it shows too
                differs = True
            self.seen[flaw] += differs
        self.seen["steps"] += 1
        self.seen[f"{before.preemption} preemption"] += bool(plan.preempted)
        calls = ref.memory.calls[start:]
        self.seen["self-preemption"] += any(
            a[0] == "grow" and a[2] is False and b[0] in ("release", "swap_out") and a[1] == b[1]
            for a, b in zip(calls, calls[1:])
        )
        self.seen["swap in"] += bool(plan.swapped_in)
        self.seen["prefix hit"] += any(s.num_computed > 0 for s in plan.admitted)
        self.seen["empty step"] += not before.has_work()
        self.sched = ref
        return plan


@pytest.fixture(scope="module")
def survey() -> Counter:
    seen: Counter = Counter()
    for label, config, requests, steps in scheduler.HIDDEN_WALKS:
        _Survey(config, requests, label, seen=seen).run(steps)
    for a, b in scheduler.hidden_walk_pairs(None):
        pair = [_Survey(w.config, w.requests, w.label, seen=seen) for w in (a, b)]
        scheduler.run_in_turn(*pair, scheduler.HIDDEN_STEPS)
    return seen


def test_the_flawless_policy_is_kvlibs_step_and_every_flaw_shows_in_the_hidden_walks(survey) -> None:
    assert survey["steps"] > 600
    rare = {flaw: survey[flaw] for flaw in scheduler.FLAWS if survey[flaw] < 1}
    assert not rare, f"flaws that no hidden step shows: {rare}"
    # most flaws show many times, so the hidden grade does not hang on one lucky state
    few = {flaw: survey[flaw] for flaw in scheduler.FLAWS if survey[flaw] < 20}
    assert set(few) <= {"zero_rows", "swap_ignores_budget"}, few


def test_the_hidden_walks_reach_the_states_the_docstring_names(survey) -> None:
    for event in ("recompute preemption", "swap preemption", "swap in"):
        assert survey[event] >= 20, (event, survey)
    assert survey["self-preemption"] >= 5, survey
    assert survey["prefix hit"] >= 5 and survey["empty step"] >= 3, survey


def _flawed(flaw: str) -> str:
    return (
        "from autograder.checks.ch08.scheduler import policy as _flawed_policy\n\n\n"
        f"def schedule_step(sched):\n    return _flawed_policy(sched, {flaw!r})\n"
    )


@pytest.mark.parametrize("flaw", list(scheduler.FLAWS))
def test_each_classic_mistake_fails_naming_itself(flaw: str) -> None:
    message = failure_message(NOTEBOOK, "schedule_step", _flawed(flaw))
    assert "likely mistake" in message and scheduler.FLAWS[flaw] in message, message


def test_the_flawless_policy_passes(capsys) -> None:
    run_exercise(NOTEBOOK, "schedule_step", _flawed(None))
    assert "hidden tests passed" in capsys.readouterr().out


def test_twins_share_nothing_with_the_original_and_equal_a_deep_copy() -> None:
    from kvlib.serve.scheduler import StepPlan, schedule_step

    sched = scheduler._scripted_state("swap")
    plan = StepPlan(rows=[(sched.running[0], 1)], preempted=[sched.waiting[0]])
    twin, twin_plan = scheduler.twin_of(sched, plan)
    deep, deep_plan = copy.deepcopy((sched, plan))
    lists = scheduler._plan_lists
    assert scheduler._outcome(twin, lists(twin_plan), 0) == scheduler._outcome(deep, lists(deep_plan), 0)
    assert twin_plan.rows[0][0] is twin.running[0] and twin_plan.preempted[0] is twin.waiting[0]
    before = scheduler._outcome(sched, lists(plan), 0)
    schedule_step(twin)
    twin.running[0].num_computed = 0
    twin.memory.prefix_hits[99] = 1
    assert scheduler._outcome(sched, lists(plan), 0) == before and 99 not in sched.memory.prefix_hits
    sched.extra = []  # an attribute the hand-made copy does not know: a deep copy is made instead
    assert scheduler.twin_of(sched).extra is not sched.extra


def test_the_checks_are_quick() -> None:
    namespace = namespace_before(NOTEBOOK, "kv_bytes_per_gpu")
    for name in ("preempt", "schedule_step"):
        started = time.perf_counter()
        getattr(scheduler, f"{name}_visible")(namespace[name])
        getattr(scheduler, f"{name}_hidden")(namespace[name])
        assert time.perf_counter() - started < 6, name  # about 0.4 s each on an idle machine


# --- messages no mutant reaches --------------------------------------------------------------------------


def _step_message(source: str) -> str:
    return failure_message(NOTEBOOK, "schedule_step", source)


def test_a_step_that_runs_kvlibs_scheduler_scores_zero() -> None:
    source = "def schedule_step(sched):\n    return sched.schedule()\n"
    assert "delegates to kvlib" in _step_message(source)


def test_a_preempt_that_runs_kvlibs_method_scores_zero() -> None:
    source = "def preempt(sched, seq, plan):\n    sched.preempt(seq, plan)\n"
    assert "delegates to kvlib" in failure_message(NOTEBOOK, "preempt", source)


@pytest.mark.parametrize(
    "returned, words",
    [
        ("None", "returned None"),
        ("{'rows': plan.rows}", "must return a StepPlan"),
        ("StepPlan(rows=[(s, float(n)) for s, n in plan.rows], admitted=plan.admitted, preempted="
         "plan.preempted, swapped_in=plan.swapped_in)", "must be an int"),
        ("StepPlan(rows=[(SequenceState(s.seq_id, s.num_tokens), n) for s, n in plan.rows])",
         "own SequenceState objects"),
        ("StepPlan(rows=[s for s, n in plan.rows])", "a pair (seq, n)"),
    ],
)  # fmt: skip
def test_a_plan_of_the_wrong_kind_fails_saying_what_a_plan_is(returned: str, words: str) -> None:
    source = edited_solution(NOTEBOOK, "schedule_step", ("    return plan\n", f"    return {returned}\n"))
    assert words in _step_message(source)


def test_a_grow_loop_that_does_not_stop_at_its_own_preemption_is_explained() -> None:
    source = edited_solution(
        NOTEBOOK, "schedule_step", ("            if victim is seq:\n                break\n", "")
    )
    message = _step_message(source)
    assert "raised RuntimeError" in message and "it was the victim itself" in message, message


def test_a_growth_loop_that_grows_in_reverse_order_names_the_grow_phase() -> None:
    source = edited_solution(
        NOTEBOOK,
        "schedule_step",
        ("for seq in list(sched.running):  # 1. grow", "for seq in list(sched.running)[::-1]:"),
    )
    message = _step_message(source)
    assert "phase 1 (grow)" in message and "in running order" in message, message


def _preempt_message(*edits: tuple[str, str]) -> str:
    return failure_message(NOTEBOOK, "preempt", edited_solution(NOTEBOOK, "preempt", *edits))


def test_preempt_without_a_memory_call_says_which_one() -> None:
    message = _preempt_message(("        sched.memory.release(seq)\n", ""))
    assert "call sched.memory.release(seq)" in message, message


def test_preempt_that_touches_other_sequences_fails() -> None:
    message = _preempt_message(  # clears every running sequence's pending slot, not only seq's
        (
            "        seq.needs_slot = False\n",
            "        for s in [seq, *sched.running]:\n            s.needs_slot = False\n",
        )
    )
    assert "which was not preempted, changed" in message, message


def test_the_solution_sources_are_the_ones_graded() -> None:
    sources = solution_sources(NOTEBOOK)
    assert "sched.preempt(victim, plan)" in sources["schedule_step"]
    assert "sched.waiting.appendleft(seq)" in sources["preempt"]
