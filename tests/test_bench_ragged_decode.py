"""``python -m kvlib.bench ragged-decode`` at a tiny size: every run produces its dense twin's tokens."""

from __future__ import annotations

import pytest

from kvlib.bench.__main__ import main
from kvlib.bench.ragged_decode import SHARED_PREFIX, make_prompts

pytestmark = [pytest.mark.ch06, pytest.mark.ch07]


def test_prompts_differ_in_length_and_half_share_a_prefix():
    prompts = make_prompts(6, seed=3)
    assert len({len(p) for p in prompts}) > 1
    assert all(p[:SHARED_PREFIX] == prompts[0][:SHARED_PREFIX] for p in prompts[:3])
    assert all(p[:SHARED_PREFIX] != prompts[0][:SHARED_PREFIX] for p in prompts[3:])


def test_small_run_prints_every_line_with_matching_tokens(capsys):
    assert main(["ragged-decode", "--prompts", "3", "--new-tokens", "3", "--block-size", "4"]) == 0
    out = capsys.readouterr().out
    for run in ("dense, one at a time", "paged ragged", "dense batch", "paged batch"):
        line = next(line for line in out.splitlines() if line.startswith(run))
        assert line.endswith("True"), line
    assert "held by prefix hits" in out


def test_new_tokens_past_the_context_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ragged-decode", "--new-tokens", "400"])
    assert exit_info.value.code == 2 and "--new-tokens" in capsys.readouterr().err
