"""Exercise `diagnoses`: name the bottleneck and the fix of each of the four server reports.

The answer is a dict from each report's letter to a (bottleneck, fix) pair of labels from kvlib's menus
(`kvlib.serve.diagnosis.BOTTLENECKS` and `FIXES`), compared with `answer_key()`. Labels are matched
ignoring case and runs of spaces; a pair may be a tuple or a list. The visible tests check the shape of
the whole answer and one report; the hidden tests check all four, bottleneck and fix, and that a second
call gives the same answer.

A wrong label gets a hint that names the rows of that report to read (never the label): which numbers
differ from the healthy reference, and for the classic wrong picks (the PCIe link for a server that
preempts, paging for padded batches, batching for contiguous reservations, a bigger pool for a cache
whose working set is far larger) why that pick does not fit the numbers. No simulation runs here: the
reports are the notebook's, the key is kvlib's.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..common import CheckFailed, call, expect, shown
from ..delegation import graded

# The key, and its explanations (which name the answers), would hand the answer in.
REFERENCES = ("kvlib.serve.diagnosis.answer_key", "kvlib.serve.diagnosis.explanations")

# Rows of each report to read, quoted as the report prints them (tests/test_ch09_diagnosis_checks.py
# checks that every quoted row exists in that report).
BOTTLENECK_HINTS = {
    "contiguous": (
        "compare 'reserved slots holding a token' and 'free slots the head of the queue could not use' with "
        "the healthy reference, and read the log's 'waits' lines: how many slots are free when a request "
        "waits, and how large is the largest range?"
    ),
    "static": (
        "compare 'KV slots before a prompt's first token' and 'KV slots after a request's last token' with "
        "the healthy reference, and the KV tensor shapes in the log"
    ),
    "preemption": (
        "compare 'requests in host memory', 'preemptions' and 'longest gap in one stream, s (modelled)' "
        "with the healthy reference, then weigh 'time copying KV host<->device (modelled)' against the rest "
        "of the time"
    ),
    "prefix": (
        "compare 'prompt tokens found in the prefix cache' with the 'best possible' row, and read 'requests "
        "between two asks of a document (median)' against how many blocks the pool and the documents hold"
    ),
}
FIX_HINTS = {
    "contiguous": (
        "in the healthy reference almost every reserved slot holds a token and no free slot is unusable "
        "('reserved slots never written', 'free slots the head of the queue could not use'): the fix "
        "changes how memory is handed out to requests"
    ),
    "static": (
        "the healthy reference has 0% in the padding rows and in 'decode rows computed for finished "
        "requests': the fix must remove both the padding and the rows that wait for their batch's longest "
        "answer"
    ),
    "preemption": (
        "'time copying KV host<->device (modelled)' is a small share, so faster or overlapped copies change "
        "little; 'KV blocks in use' and 'requests in host memory' say what is short"
    ),
    "prefix": (
        "the healthy reference serves the same queue in the same pool with as many requests at once; what "
        "differs is 'requests between two asks of a document (median)'"
    ),
}
# Classic wrong picks, by scenario: (menu label, why it does not fit the numbers).
WRONG_BOTTLENECK_NOTES = {
    ("preemption", "host-device (PCIe) bandwidth"): (
        "a bottleneck takes most of the time, and 'time copying KV host<->device (modelled)' is a small "
        "share of it: what do the requests wait for while their streams stop?"
    ),
    ("preemption", "compute-bound prefill"): (
        "even the slowest steps ('step time p99, ms (modelled)') take tens of milliseconds, yet streams stop "
        "for seconds ('longest gap in one stream, s (modelled)'): what are they waiting for?"
    ),
    ("static", "fragmented contiguous KV allocation"): (
        "no request here waits for memory while slots are free: the wasted slots are inside each batch's "
        "tensor"
    ),
    ("contiguous", "padding in variable-length batches"): (
        "this server batches nothing into a rectangle: each request holds its own range (the log's 'admit' "
        "lines)"
    ),
}
WRONG_FIX_NOTES = {
    ("static", "paged KV: fixed-size blocks allocated on demand"): (
        "paging alone stores each row without the rectangle, but the rows would still stay until their "
        "batch's longest answer ends ('decode rows computed for finished requests') and the queue would "
        "still wait for whole batches"
    ),
    ("contiguous", "continuous batching of unpadded sequences"): (
        "this server already admits and retires requests at every step and pads nothing (see its setup and "
        "log)"
    ),
    ("prefix", "an 8-bit KV cache (twice the tokens per GiB)"): (
        "the documents fill more than twice the pool's blocks (see the setup), so twice the tokens still "
        "leaves most of them out when their next question comes"
    ),
    ("preemption", "paged KV: fixed-size blocks allocated on demand"): (
        "this server already allocates its KV in blocks of 16 (see its setup), and 'KV blocks in use' is "
        "near full while requests sit in host memory: what is short is how many tokens the pool holds"
    ),
    ("preemption", "overlap host-device copies with compute"): (
        "the copies are a small share of the time ('time copying KV host<->device (modelled)'): hiding them "
        "would not stop the streams from freezing"
    ),
}


def _reference() -> tuple[dict[str, tuple[str, str]], dict[str, str], tuple[str, ...], tuple[str, ...]]:
    from kvlib.serve.diagnosis import BOTTLENECKS, FIXES, LETTERS, answer_key

    return answer_key(), dict(LETTERS), tuple(BOTTLENECKS), tuple(FIXES)


def _norm(label: str) -> str:
    return " ".join(label.split()).casefold()


def _label(value: Any, menu: tuple[str, ...], other: tuple[str, ...], letter: str, role: str) -> str:
    """The menu label `value` spells (case and spacing aside), or a failure naming the slip."""
    where = "BOTTLENECKS" if role == "bottleneck" else "FIXES"
    if not isinstance(value, str):
        position = f" (to pick by position, write {where}[{value}])" if isinstance(value, int) else ""
        raise CheckFailed(
            f"server {letter}: the {role} must be a label (a str) from {where}, got {type(value).__name__} "
            f"{shown(value)}{position}"
        )
    found = {_norm(m): m for m in menu}.get(_norm(value))
    if found is not None:
        return found
    if _norm(value) in {_norm(m) for m in other}:
        raise CheckFailed(
            f"server {letter}: {value!r} is a label from "
            f"{'FIXES' if where == 'BOTTLENECKS' else 'BOTTLENECKS'}, given as the {role}: each pair is "
            "(bottleneck, fix), in that order"
        )
    close = difflib.get_close_matches(value, menu, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; copy one of: {', '.join(repr(m) for m in menu)}"
    raise CheckFailed(f"server {letter}: the {role} {value!r} is not one of the labels in {where}{hint}")


def _answers(
    fn: Any, letters: list[str], bottlenecks: tuple[str, ...], fixes: tuple[str, ...], when: str = ""
) -> dict:
    """Call the learner's diagnoses() and check the shape of its answer; returns letter -> labels."""
    got = call(fn, what="diagnoses()")
    what = f"diagnoses(){when}"
    expect(
        isinstance(got, dict),
        f"{what} must return a dict mapping each report's letter ({', '.join(letters)}) to a (bottleneck, "
        f"fix) pair, got {type(got).__name__} {shown(got)}",
    )
    keys = list(got)
    if all(isinstance(k, str) for k in keys) and sorted(k.upper() for k in keys) == letters and keys:
        if keys != [k.upper() for k in keys]:
            raise CheckFailed(
                f"{what}: use the capital letters the reports are printed under ({', '.join(letters)}), got "
                f"{sorted(keys)}"
            )
    if not got:
        raise CheckFailed(
            f"{what} returned an empty dict: answer every report ({', '.join(letters)}); if an earlier call "
            "returned the answers, something it needs was used up (an iterator, a list popped): build the "
            "dict anew in every call"
        )
    missing = [letter for letter in letters if letter not in got]
    if missing:
        raise CheckFailed(
            f"{what} is missing the letter(s) {missing}: answer every report ({', '.join(letters)})"
            + (" (on this second call: did the first one use up something it needs?)" if when else "")
        )
    extra = [k for k in keys if k not in letters]
    expect(not extra, f"{what} has keys that are no report's letter: {extra}; the keys are {letters}")
    out = {}
    for letter in letters:
        pair = got[letter]
        expect(
            isinstance(pair, (tuple, list)) and len(pair) == 2,
            f"{what}[{letter!r}] must be a pair (bottleneck, fix), got {type(pair).__name__} {shown(pair)}",
        )
        out[letter] = (
            _label(pair[0], bottlenecks, fixes, letter, "bottleneck"),
            _label(pair[1], fixes, bottlenecks, letter, "fix"),
        )
    return out


def _check_letter(letter: str, given: tuple[str, str], key: dict[str, tuple[str, str]], kind: str) -> None:
    bottleneck, fix = key[letter]
    if given[0] != bottleneck:
        elsewhere = any(given[0] == key[other][0] for other in key if other != letter)
        note = WRONG_BOTTLENECK_NOTES.get((kind, given[0]), BOTTLENECK_HINTS[kind])
        raise CheckFailed(
            f"server {letter}: {given[0]!r} is not what report {letter} shows"
            + (
                " (that one is another report's: each report shows a different bottleneck)"
                if elsewhere
                else ""
            )
            + f"; {note}"
        )
    if given[1] != fix:
        note = WRONG_FIX_NOTES.get((kind, given[1]), FIX_HINTS[kind])
        raise CheckFailed(
            f"server {letter}: the bottleneck is right, but {given[1]!r} does not remove it; {note}"
        )


@graded("diagnoses", *REFERENCES)
def diagnoses_visible(fn: Any) -> None:
    key, kinds, bottlenecks, fixes = _reference()
    letters = sorted(key)
    got = _answers(fn, letters, bottlenecks, fixes)
    _check_letter(letters[0], got[letters[0]], key, kinds[letters[0]])
    print(f"visible tests passed (the shape of the answer, and server {letters[0]})")


@graded("diagnoses", *REFERENCES)
def diagnoses_hidden(fn: Any) -> None:
    key, kinds, bottlenecks, fixes = _reference()
    letters = sorted(key)
    got = _answers(fn, letters, bottlenecks, fixes)
    for letter in letters:
        _check_letter(letter, got[letter], key, kinds[letter])
    again = _answers(fn, letters, bottlenecks, fixes, when=" (called a second time)")
    expect(
        again == got,
        "diagnoses() gave a different answer when called a second time: return the same dict every call (no "
        "random choice, nothing consumed or changed between calls)",
    )
    print("hidden tests passed")
