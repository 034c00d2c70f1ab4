"""Exercise `compare_rows`: what replacing cache `a` by cache `b` saves and costs, relative to `a`.

Three ratios, each easy to turn upside down, flip in sign, scale by 100 or take from the wrong
row, so the tables are built to tell those apart: rows with arbitrary names (hard-coded "int8" and
"int4" fail), extra columns, a `b` that is cheaper in one place and dearer in another (signs), and
the same pair asked both ways round. A wrong number is matched against the classic variants of its
own formula, then against the right formulas on the wrong rows or columns.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, call, expect, shown
from ..delegation import graded

REFERENCES = ("kvlib.quant.compare_rows",)

COLUMNS = {
    "memory_saving": "bytes_per_token",
    "latency_overhead": "ms_per_token",
    "quality_loss": "perplexity",
}
FORMULA = {
    "memory_saving": "1 - bytes_b / bytes_a",
    "latency_overhead": "ms_b / ms_a - 1",
    "quality_loss": "ppl_b / ppl_a - 1",
}


def _saving(x_a: float, x_b: float) -> float:
    return 1 - x_b / x_a


def _growth(x_a: float, x_b: float) -> float:
    return x_b / x_a - 1


RULES: dict[str, Callable[[float, float], float]] = {
    "memory_saving": _saving,
    "latency_overhead": _growth,
    "quality_loss": _growth,
}


def _formula_variants(key: str, x_a: float, x_b: float) -> dict[str, float]:
    """Message -> the value a classic slip in `key`'s own formula gives."""
    column, rule = COLUMNS[key], f"{key} is {FORMULA[key]}"
    right = RULES[key](x_a, x_b)
    out = {
        f"that is the percentage; return the fraction ({rule}; 0.5 is half)": 100 * right,
        f"that is relative to b: divide by a's {column} ({rule})": RULES[key](x_b, x_a),
        f"that is the ratio b / a itself; {rule}": x_b / x_a,
        f"that is the ratio a / b, upside down; {rule}": x_a / x_b,
        f"the sign is flipped: {rule}": -right,
        f"that is the difference b - a of the {column} values, not a ratio: {rule}": x_b - x_a,
        f"that is the difference a - b of the {column} values, not a ratio: {rule}": x_a - x_b,
    }
    if right < 0:
        out[f"a negative {key} is an answer (b is better than a there): do not clamp it at 0; {rule}"] = 0.0
    if isinstance(x_a, int) and isinstance(x_b, int) and x_b % x_a:
        out[f"integer division (//) truncates the ratio: use /; {rule}"] = RULES[key](x_a, x_b // x_a * x_a)
    return out


def _close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def _expected(table: dict, a: str, b: str) -> dict[str, float]:
    from kvlib.quant import compare_rows

    return compare_rows(table, a, b)


def _whole_answer_mistake(table: dict, a: str, b: str, values: dict[str, Any]) -> str | None:
    """A right formula on the wrong pair of rows: a and b swapped, or hard-coded row names."""

    def same(other: dict[str, float]) -> bool:
        return all(_close(values[k], other[k]) for k in RULES)

    if same(_expected(table, b, a)):
        return (
            "a and b are swapped (or every ratio is upside down): each number is relative to a, with a's "
            "value as the denominator"
        )
    for r1 in table:
        for r2 in table:
            if r1 != r2 and (r1, r2) not in ((a, b), (b, a)) and same(_expected(table, r1, r2)):
                return (
                    f"that is the comparison of rows {r1!r} and {r2!r}, not of a={a!r} and b={b!r}: use the "
                    "row names the function is given (table[a], table[b]), never fixed ones"
                )
    return None


def _key_mistake(table: dict, a: str, b: str, key: str, value: float) -> str:
    column = COLUMNS[key]
    for message, v in _formula_variants(key, table[a][column], table[b][column]).items():
        if _close(value, v):
            return message
    right = RULES[key](table[a][column], table[b][column])
    if any(_close(value, round(right, digits)) for digits in (1, 2, 3, 4)):
        return "it is rounded: return the exact ratio (round only when you print it)"
    for other in set(COLUMNS.values()) - {column}:
        if _close(value, RULES[key](table[a][other], table[b][other])):
            return f"{key} was computed from the {other!r} column; it compares {column!r}"
    return f"{key} is {FORMULA[key]}, from the {column!r} column of rows a and b"


def _check_unchanged(table: dict, before: dict, what: str) -> None:
    expect(
        table == before and list(table) == list(before),
        f"compare_rows modified the table it was given ({what}): build new values (and a new dict to "
        "return) instead of writing into the table or its rows; the caller still needs them as measured",
    )


def _call(fn: Callable[..., Any], table: dict, a: str, b: str, what: str) -> Any:
    before = copy.deepcopy(table)
    try:
        got = call(fn, table, a, b, what="compare_rows")
    except CheckFailed as exc:
        _check_unchanged(table, before, what)
        if "KeyError" in str(exc):
            raise CheckFailed(
                f"{exc} ({what}): the rows are named {sorted(table)} and the columns are bytes_per_token, "
                "perplexity and ms_per_token; look rows up with the names a and b you are given"
            ) from None
        raise
    _check_unchanged(table, before, what)
    return got


def _check_case(fn: Callable[..., Any], table: dict, a: str, b: str, what: str) -> None:
    what = f"compare_rows(table, {a!r}, {b!r}) for {what}"
    got = _call(fn, table, a, b, what)
    expect(isinstance(got, dict), f"{what} must return a dict, got {type(got).__name__}: {shown(got)}")
    missing = [k for k in RULES if k not in got]
    expect(
        not missing,
        f"{what} is missing the keys {missing} (got {sorted(map(str, got))}): return exactly "
        "'memory_saving', 'latency_overhead' and 'quality_loss'",
    )
    extra = sorted(map(str, set(got) - set(RULES)))
    expect(not extra, f"{what} must return exactly three keys; it also returned {extra}")
    for key in RULES:
        _check_float(got[key], f"{what}[{key!r}]")
    want = _expected(table, a, b)
    values = {k: float(got[k]) for k in RULES}
    wrong = [k for k in RULES if not _close(values[k], want[k])]
    if wrong:
        key = wrong[0]
        mistake = _whole_answer_mistake(table, a, b, values) or _key_mistake(table, a, b, key, values[key])
        raise CheckFailed(f"{what}: {key} should be {want[key]!r}, got {values[key]!r}; {mistake}")


def _check_float(value: Any, what: str) -> None:
    if isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} is a tensor {shown(value)}: return a Python float (float(...) or .item())")
    expect(
        isinstance(value, float),  # numpy.float64 is a float; float32, int, Fraction and Decimal are not
        f"{what} must be a Python float, got {type(value).__name__} {value!r:.60}: convert it with "
        "float(...)",
    )


def _check_missing_row(fn: Callable[..., Any], table: dict, a: str, b: str, missing: str) -> None:
    what = f"compare_rows(table, {a!r}, {b!r}), where the table has no row {missing!r}"
    before = copy.deepcopy(table)
    try:
        got = fn(table, a, b)
    except KeyError:
        _check_unchanged(table, before, what)
        return
    except NotImplementedError:
        raise CheckFailed("compare_rows is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - any other error is the wrong one
        raise CheckFailed(
            f"{what} must raise KeyError, but raised {type(exc).__name__}: {exc} (table[name] raises "
            "KeyError by itself; .get() with a default hides the missing row)"
        ) from None
    raise CheckFailed(
        f"{what} must raise KeyError, but returned {shown(got)}: a missing row is a mistake to report, not a "
        "row of defaults (use table[name], not table.get(name, ...))"
    )


def _row(nbytes: int, ppl: float, ms: float, **extra: Any) -> dict[str, Any]:
    return {"bytes_per_token": nbytes, "perplexity": ppl, "ms_per_token": ms, **extra}


def visible_table() -> dict[str, dict[str, Any]]:
    """Rows like the notebook's measurement table (bytes per token of the shipped model)."""
    return {
        "fp32": _row(6144, 5.80, 3.10),
        "int8": _row(1632, 5.81, 3.90),
        "int4": _row(864, 5.97, 4.35),
    }


def hidden_table() -> dict[str, dict[str, Any]]:
    """More rows, names a learner would never type, extra columns; b both cheaper and dearer than a."""
    return {
        "kivi-2bit/G32/R128": _row(213, 6.412, 5.25, bits=2, notes="residual window of 128"),
        "bf16 baseline": _row(3072, 5.793, 2.48, bits=16, notes="exact"),
        "int8 per-token": _row(1632, 5.805, 3.97, bits=8, tokens_per_s=251.9),
        "int4 g64": _row(816, 5.911, 4.62, bits=4),
        "fp8_e4m3": _row(1540, 5.842, 2.11, bits=8, notes="float format"),
        "int8": _row(1600, 5.79, 3.00, bits=8),
        "int4": _row(800, 6.00, 4.00, bits=4),
    }


@graded("compare_rows", *REFERENCES)
def compare_rows_visible(fn: Callable[..., Any]) -> None:
    """int8 to int4 on a table like the notebook's, and fp32 to int8."""
    table = visible_table()
    _check_case(fn, table, "int8", "int4", "the visible table (int4 saves memory, costs time and quality)")
    _check_case(fn, table, "fp32", "int8", "the visible table")
    print("compare_rows: visible tests passed")


@graded("compare_rows", *REFERENCES)
def compare_rows_hidden(fn: Callable[..., Any]) -> None:
    """Other row names and extra columns; negative overhead and loss (b faster and better); each pair
    both ways round; KeyError for a missing a or b; the table never modified; Python floats."""
    table = hidden_table()
    pairs = [
        ("int8 per-token", "kivi-2bit/G32/R128", "b smaller, slower and worse than a"),
        ("kivi-2bit/G32/R128", "int8 per-token", "b larger, faster and better than a: all three negative"),
        ("int4 g64", "fp8_e4m3", "b faster and better but larger: memory_saving and the others negative"),
        ("bf16 baseline", "int4 g64", "rows with extra columns (bits, notes)"),
        ("int8 per-token", "int8 per-token", "a row compared with itself: all three are 0.0"),
        ("fp8_e4m3", "int8", "rows named int8 and int4 exist, but a is another row"),
        ("int4", "bf16 baseline", "b is the baseline row"),
    ]
    for a, b, what in pairs:
        _check_case(fn, table, a, b, what)
    for a, b, missing in [
        ("int8", "int2", "int2"),
        ("fp16", "int4", "fp16"),
        ("bf16 baseline", "bf16", "bf16"),
    ]:
        _check_missing_row(fn, table, a, b, missing)
    small = {"x": _row(10, 2.0, 1.0), "y": _row(4, 2.5, 0.5)}
    _check_case(fn, small, "x", "y", "a two-row table with other names")
    print("compare_rows: hidden tests passed")
