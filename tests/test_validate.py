"""Unit tests of kvlib.validate itself: accepted spellings, rejected types, bounds and argparse exits."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from bad_input import Case, CliCase, assert_clear_error, assert_cli_error, params

from kvlib.validate import (
    describe,
    int_list_arg,
    nonnegative_int_arg,
    number_arg,
    positive_float_arg,
    positive_int_arg,
    require_bool,
    require_device,
    require_int,
    require_number,
    require_tensor,
    require_token_ids,
)

# --- describe --------------------------------------------------------------------------------------------


def test_describe_names_value_and_type() -> None:
    assert describe(4.5) == "4.5 (float)"
    assert describe("x") == "'x' (str)"
    assert describe(None) == "None (NoneType)"
    long = describe("a" * 200)
    assert long.endswith("... (str)") and len(long) < 80


# --- require_int -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3), torch.tensor(3, dtype=torch.int32)],
    ids=["int", "np.int64", "np.int32", "np.uint8", "tensor-int64", "tensor-int32"],
)
def test_require_int_accepts_integer_spellings(value) -> None:
    got = require_int("n", value, minimum=1, maximum=3)
    assert got == 3 and type(got) is int


def test_require_int_bounds_are_inclusive() -> None:
    assert require_int("n", 0, minimum=0) == 0
    assert require_int("n", 5, maximum=5) == 5
    assert require_int("n", -7) == -7  # no bounds: any integer


CASES = [
    Case("bool", lambda: require_int("n", True), TypeError, ("n must be an integer", "True (bool)")),
    Case("numpy-bool", lambda: require_int("n", np.bool_(True)), TypeError, ("n", "bool")),
    Case(
        "float",
        lambda: require_int("n", 4.5, minimum=1),
        TypeError,
        ("n must be an integer >= 1", "4.5 (float)"),
    ),
    Case("integral-float", lambda: require_int("n", 4.0), TypeError, ("n", "4.0 (float)")),
    Case("numpy-float", lambda: require_int("n", np.float64(2.0)), TypeError, ("n", "float64")),
    Case("str", lambda: require_int("n", "3"), TypeError, ("n", "'3' (str)")),
    Case("none", lambda: require_int("n", None), TypeError, ("n", "None")),
    Case("float-tensor", lambda: require_int("n", torch.tensor(2.0)), TypeError, ("n", "Tensor")),
    Case("1d-tensor", lambda: require_int("n", torch.tensor([2])), TypeError, ("n", "Tensor")),
    Case(
        "below-min",
        lambda: require_int("num_blocks", 0, minimum=1),
        ValueError,
        ("num_blocks", ">= 1", "got 0"),
    ),
    Case(
        "above-max",
        lambda: require_int("n", 6, maximum=5),
        ValueError,
        ("n must be an integer <= 5", "got 6"),
    ),
    Case("outside-range", lambda: require_int("n", 9, minimum=0, maximum=8), ValueError, ("[0, 8]", "got 9")),
    Case(
        "numpy-below-min", lambda: require_int("n", np.int64(-1), minimum=0), ValueError, ("n", ">= 0", "-1")
    ),
    # --- require_token_ids
    Case(
        "tokens-str",
        lambda: require_token_ids("tokens", "hello"),
        TypeError,
        ("tokens", "token ids", "'hello'"),
    ),
    Case("tokens-bytes", lambda: require_token_ids("tokens", b"hi"), TypeError, ("tokens", "bytes")),
    Case("tokens-int", lambda: require_token_ids("tokens", 5), TypeError, ("tokens", "sequence", "5 (int)")),
    Case("tokens-float-item", lambda: require_token_ids("tokens", [1, 2.5]), TypeError, ("tokens[1]", "2.5")),
    Case(
        "tokens-negative",
        lambda: require_token_ids("tokens", [1, -1]),
        ValueError,
        ("tokens[1]", ">= 0", "-1"),
    ),
    Case(
        "tokens-out-of-vocab",
        lambda: require_token_ids("tokens", [3, 16], vocab_size=16),
        ValueError,
        ("tokens[1]", "[0, 15]", "16"),
    ),
    Case("tokens-bool-item", lambda: require_token_ids("tokens", [True]), TypeError, ("tokens[0]", "bool")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_clear_error(case: Case) -> None:
    assert_clear_error(case)


def test_require_token_ids_accepts_sequences() -> None:
    assert require_token_ids("t", [1, 2]) == [1, 2]
    assert require_token_ids("t", (np.int64(3),), vocab_size=4) == [3]
    assert require_token_ids("t", torch.tensor([0, 5])) == [0, 5]  # iterating gives 0-d int tensors
    assert require_token_ids("t", np.array([7])) == [7]
    assert require_token_ids("t", iter([1])) == [1]
    assert require_token_ids("t", []) == []
    assert all(type(x) is int for x in require_token_ids("t", torch.tensor([1, 2])))


# --- argparse converters: called directly -------------------------------------------------------------


def test_converters_accept_good_text() -> None:
    assert positive_int_arg("3") == 3
    assert positive_int_arg(" 7 ") == 7  # int() strips whitespace
    assert nonnegative_int_arg("0") == 0
    assert positive_float_arg("0.5") == 0.5
    assert positive_float_arg("1e-3") == 1e-3
    assert int_list_arg("16,64, 128") == [16, 64, 128]
    assert int_list_arg("1") == [1]


@pytest.mark.parametrize(
    "convert, text, words",
    [
        (positive_int_arg, "0", (">= 1", "0")),
        (positive_int_arg, "-3", (">= 1", "-3")),
        (positive_int_arg, "4.5", (">= 1", "'4.5'")),
        (positive_int_arg, "abc", ("integer", "'abc'")),
        (positive_int_arg, "", ("integer", "''")),
        (nonnegative_int_arg, "-1", (">= 0", "-1")),
        (nonnegative_int_arg, "1.0", (">= 0", "'1.0'")),
        (positive_float_arg, "0", ("> 0", "'0'")),
        (positive_float_arg, "-2.5", ("> 0", "'-2.5'")),
        (positive_float_arg, "nan", ("finite", "'nan'")),
        (positive_float_arg, "inf", ("finite", "'inf'")),
        (positive_float_arg, "x", ("number", "'x'")),
        (int_list_arg, "", ("comma-separated", "''")),
        (int_list_arg, "16,,64", ("comma-separated", "'16,,64'")),
        (int_list_arg, "16,", ("comma-separated",)),
        (int_list_arg, "16,0", (">= 1", "0")),
        (int_list_arg, "16,x", ("integer", "'x'")),
    ],
)
def test_converters_reject_bad_text(convert, text: str, words: tuple[str, ...]) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(text)
    message = str(info.value)
    assert "\n" not in message
    assert all(w in message for w in words), message


def test_converters_keep_their_names() -> None:
    # argparse names the converter in "invalid <name> value" messages for other exception types
    assert positive_int_arg.__name__ == "positive_int_arg"
    assert int_list_arg.__name__ == "int_list_arg"


# --- argparse converters: through a real parser, exit status 2 and no traceback ---------------------


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--steps", type=positive_int_arg, default=1)
    parser.add_argument("--warmup", type=nonnegative_int_arg, default=0)
    parser.add_argument("--scale", type=positive_float_arg, default=1.0)
    parser.add_argument("--lengths", type=int_list_arg, default=[16])
    args = parser.parse_args(argv)
    print(args.steps, args.warmup, args.scale, args.lengths)
    return 0


CLI_CASES = [
    CliCase("steps-zero", ["--steps", "0"], ("--steps", ">= 1", "got 0", "usage: demo")),
    CliCase("steps-float", ["--steps", "2.5"], ("--steps", "'2.5'")),
    CliCase("warmup-negative", ["--warmup", "-1"], ("--warmup", ">= 0")),
    CliCase("scale-nan", ["--scale", "nan"], ("--scale", "finite")),
    CliCase("scale-zero", ["--scale", "0"], ("--scale", "> 0")),
    CliCase("lengths-empty-item", ["--lengths", "16,,64"], ("--lengths", "comma-separated")),
    CliCase("lengths-zero", ["--lengths", "16,0"], ("--lengths", ">= 1")),
]


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_cli_exit_2(case: CliCase) -> None:
    assert_cli_error(_main, case)


def test_cli_good_values_parse() -> None:
    from bad_input import run_cli

    code, out, err = run_cli(_main, ["--steps", "3", "--warmup", "0", "--scale", "0.5", "--lengths", "8,16"])
    assert code == 0 and err == "" and out.split() == ["3", "0", "0.5", "[8,", "16]"]


def test_number_arg_takes_a_closed_range():
    fraction = number_arg(0, 1)
    assert fraction("0") == 0.0 and fraction("1") == 1.0 and fraction("0.25") == 0.25
    for text in ("1.5", "-0.1", "nan", "inf", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected a finite number >= 0 and <= 1"):
            fraction(text)
    assert number_arg(0)("1e9") == 1e9


def test_require_number_bounds():
    assert require_number("p", 1, maximum=1) == 1.0
    with pytest.raises(ValueError, match=r"p must be a finite number >= 0 and <= 1, got 2"):
        require_number("p", 2, maximum=1)
    with pytest.raises(ValueError, match=r"> 0"):
        require_number("median", 0, inclusive=False)
    with pytest.raises(TypeError, match=r"\(bool\)"):
        require_number("median", True)


def test_require_tensor_names_layout_and_dims():
    t = torch.zeros(2, 3)
    assert require_tensor("k", t) is t and require_tensor("k", t, 2, "[B, T]") is t
    with pytest.raises(TypeError, match=r"torch.Tensor \[B, T\], got a numpy.ndarray of shape \(2, 3\)"):
        require_tensor("k", np.zeros((2, 3)), 2, "[B, T]")
    with pytest.raises(ValueError, match=r"k must be \[B, H, T, D\] \(4 dims\), got shape \[2, 3\]"):
        require_tensor("k", t, 4, "[B, H, T, D]")


def test_require_bool_refuses_truthy_stand_ins():
    assert require_bool("flag", True) is True and require_bool("flag", np.bool_(False)) is False
    for value in ("no", 1, 0, None, "False"):
        with pytest.raises(TypeError, match=r"flag must be True or False"):
            require_bool("flag", value)


def test_require_device_names_the_argument():
    assert require_device("device", "cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device must be a torch.device or a name like.*'gpu' \(str\)"):
        require_device("device", "gpu")
    with pytest.raises(ValueError, match=r"must be one of cuda"):
        require_device("device", "cpu", allowed=("cuda",))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available"):
            require_device("device", "cuda")


def test_describe_a_class_names_it():
    # numpy.ndarray and torch.Tensor have ndim/shape descriptors on the class itself
    assert "ndarray" in describe(np.ndarray) and "Tensor" in describe(torch.Tensor)


def test_require_number_without_a_lower_bound_still_refuses_nan_and_non_numbers():
    assert require_number("scale", -2.5, minimum=None) == -2.5
    with pytest.raises(ValueError, match=r"scale must be a finite number, got nan"):
        require_number("scale", float("nan"), minimum=None)
    with pytest.raises(TypeError, match=r"scale must be a finite number, got 'x' \(str\)"):
        require_number("scale", "x", minimum=None)
