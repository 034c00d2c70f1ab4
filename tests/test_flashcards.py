"""kvlib.flashcards: every numeric answer is kvlib's own number, the bank covers chapters 01-08, and the
deck keeps its score and its seeded order."""

from __future__ import annotations

import math

import pytest
import torch

from kvlib.cache.gqa import config_kv_bytes_per_token, kv_saving_factor
from kvlib.cache.mla import mla_kv_bytes_per_token
from kvlib.flashcards import Card, FlashCards, format_number, question_bank
from kvlib.memory import (
    MODEL_CONFIGS,
    GiB,
    bytes_per_element,
    kv_bytes_per_gpu,
    kv_cache_bytes,
    kv_heads_per_gpu,
    quantized_kv_cache_bytes,
)

pytestmark = pytest.mark.ch09

M = MODEL_CONFIGS


def _pruned_six_of_twelve() -> float:
    from kvlib.cache.heads import pruned_kv_fraction

    plan = torch.tensor([[True] * 6 + [False] * 6])
    return 100 * pruned_kv_fraction(plan, 2048, 4, 16)


def _splits() -> int:
    from kvlib.kernels import choose_num_splits

    return choose_num_splits(1, 8, 4096, "cpu", num_sms=132)


def _kvlib(path: str):
    """An attribute of a kvlib module, imported when the expectation runs."""
    module, name = path.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


# Each numeric card's answer, computed here from kvlib independently of the bank's own lambdas.
EXPECTED = {
    "ch01-decode-position": lambda: 12 + 4 - 1,
    "ch01-recomputed-rows": lambda: 512 * 513 // 2,
    "ch02-llama2-7b-4096": lambda: kv_cache_bytes(32, 32, 128, 4096, 1, "fp16") / GiB,
    "ch02-llama2-70b-if-mha": lambda: kv_cache_bytes(80, 64, 128, 4096, 1, "fp16") / GiB,
    "ch02-llama2-70b-gqa": lambda: M["Llama-2-70B"].kv_bytes(4096, 1, "fp16") / GiB,
    "ch02-server-100-requests": lambda: M["Llama-2-70B"].kv_bytes(2048, 100, "fp16") / GiB,
    "ch02-gb-claim": lambda: M["Llama-2-7B"].kv_bytes(4096, 1, "fp16") / 1e9,
    "ch02-unshared-system-prompt": lambda: kv_cache_bytes(32, 32, 128, 1000, 1000, "fp16") / GiB,
    "ch02-sequences-that-fit": lambda: 80 * GiB // M["Llama-3-8B"].kv_bytes(4096, 1, "fp16"),
    "ch03-saving-factor": lambda: kv_saving_factor(M["Llama-2-70B"]),
    "ch03-qwen2-per-token": lambda: config_kv_bytes_per_token(M["Qwen2-7B"], "fp16") / 1024,
    "ch03-which-kv-head": lambda: 13 // (M["Llama-3-8B"].num_heads // M["Llama-3-8B"].num_kv_heads),
    "ch03-mla-per-token": lambda: mla_kv_bytes_per_token(60, 512, 64, "fp16") / 1024,
    "ch03-mla-vs-mha": lambda: (
        kv_cache_bytes(60, 128, 128, 1, 1, "fp16") / mla_kv_bytes_per_token(60, 512, 64)
    ),
    "ch04-int8-error-bound": lambda: (
        _kvlib("kvlib.quant.quantize_int8")(torch.tensor([[2.54]]))[1].item() / 2
    ),
    "ch04-zero-point": lambda: _kvlib("kvlib.quant.quantize_groups")(torch.tensor([[-1.0, 3.0]]), 2)[
        2
    ].item(),
    "ch04-pack-nibbles": lambda: _kvlib("kvlib.quant.pack_int4")(
        torch.tensor([3, 10], dtype=torch.uint8)
    ).item(),
    "ch04-bits-per-number": lambda: (
        8 * quantized_kv_cache_bytes(4, 2, 64, 320, 3, 4, 32, 0) / (2 * 4 * 2 * 64 * 320 * 3)
    ),
    "ch04-kivi-share": lambda: (
        100
        * quantized_kv_cache_bytes(32, 32, 128, 4096, 1, 2, 32, 128, dtype="fp16")
        / kv_cache_bytes(32, 32, 128, 4096, 1, "fp16")
    ),
    "ch05-ring-slot": lambda: int(_kvlib("kvlib.cache.evict.ring_order")(1001, 256)[-1]),
    "ch05-sink-position": lambda: int(_kvlib("kvlib.cache.evict.sink_positions")(2000, 1, 4, 252)[1].max()),
    "ch05-head-pruning": _pruned_six_of_twelve,
    "ch06-slot": lambda: 9 * 16 + 37 % 16,
    "ch06-prefix-saving": lambda: (
        100 * _kvlib("kvlib.paged.sharing.analytic_prefix_saving")(1000, 1000, 100, 16)
    ),
    "ch06-shared-prompt": lambda: kv_cache_bytes(32, 32, 128, 1000, 1, "fp16") / GiB,
    "ch06-block-waste": lambda: 100 * _kvlib("kvlib.paged.sharing.block_waste")([37, 1000], [0.3, 0.7], 16),
    "ch07-intensity": lambda: 2 * 4 / bytes_per_element("float16"),
    "ch07-group-bytes": lambda: M["Llama-3-70B"].num_heads / M["Llama-3-70B"].num_kv_heads,
    "ch07-split-k": _splits,
    "ch08-tpot": lambda: (
        1000
        * _kvlib("kvlib.serve.metrics.tpot")(
            _kvlib("kvlib.serve.metrics.RequestTimes")(0.0, [0.50, 0.62, 0.70, 0.86])
        )
    ),
    "ch08-percentile": lambda: _kvlib("kvlib.serve.metrics.percentile")([0.1, 0.2, 0.3, 0.4, 0.9], 90),
    "ch08-tp-per-gpu": lambda: kv_bytes_per_gpu(M["Llama-3-70B"], 16, 8192, 16, "fp16") / GiB,
    "ch08-tp-heads": lambda: kv_heads_per_gpu(M["Qwen2-7B"], 4),
    "ch08-speculative-blocks": lambda: math.ceil(130 / 16) - math.ceil(127 / 16),
}


def numeric_cards() -> list[Card]:
    return [card for card in question_bank() if card.numeric]


@pytest.mark.parametrize("card", numeric_cards(), ids=lambda card: card.key)
def test_every_numeric_answer_is_its_kvlib_computation(card):
    assert card.key in EXPECTED, f"{card.key}: add its kvlib computation to EXPECTED"
    expected = EXPECTED[card.key]()
    assert card.expected() == pytest.approx(expected, rel=1e-9)
    assert isinstance(card.expected(), float) and math.isfinite(card.expected())
    assert card.question.endswith(f"[{card.unit}]") and card.answer_text().startswith(format_number(expected))
    assert card.answer_text().endswith({"x": "x", "GiB": " GiB", "rows": " (rows)"}.get(card.unit, ""))


def test_the_bank_covers_chapters_01_to_08_and_the_course_topics():
    bank = question_bank()
    assert len(bank) >= 40 and len({card.key for card in bank}) == len(bank)
    assert set(EXPECTED) == {card.key for card in numeric_cards()}, "EXPECTED lists a card the bank lacks"
    for chapter in range(1, 9):
        cards = [card for card in bank if card.chapter == chapter]
        assert len(cards) >= 4, f"chapter {chapter:02d} has {len(cards)} cards"
        assert any(card.numeric for card in cards) and any(not card.numeric for card in cards)
        assert all(card.key.startswith(f"ch{chapter:02d}-") for card in cards)
    topics = {card.topic for card in bank}
    for topic in (
        "KV formula", "prefill vs decode", "positions after eviction", "beams and copy-on-write",
        "prefix caching", "KIVI", "sliding window", "attention sinks", "H2O", "paged decode kernel",
        "continuous batching", "preemption", "speculative decoding", "tensor parallelism", "GQA", "MLA",
    ):  # fmt: skip
        assert topic in topics, topic
    for card in bank:
        assert "\n" not in card.explanation and card.explanation.strip()
        if not card.numeric:
            assert len(card.model_answer) > 80 and card.unit == "" and "  " not in card.model_answer
            with pytest.raises(ValueError, match="written card"):
                card.expected()


def first_card(deck: FlashCards, numeric: bool) -> Card:
    while True:
        card = deck.draw()
        if card.numeric == numeric:
            return card


def test_numeric_answers_score_once_within_the_cards_tolerance():
    deck = FlashCards(seed=1)
    with pytest.raises(RuntimeError, match="draw"):
        deck.answer(1.0)
    card = first_card(deck, numeric=True)
    truth = card.expected()
    result = deck.answer(truth * (1 + card.rel_tol / 2))
    assert result.correct and result.counted and (deck.right, deck.answered) == (1, 1)
    assert result.message.startswith("Right") and card.explanation in result.message
    again = deck.answer(truth * 3 + 1)  # a second answer is checked but not scored
    assert not again.correct and not again.counted and "Not scored again" in str(again)
    assert (deck.right, deck.answered) == (1, 1)
    card = first_card(deck, numeric=True)
    wrong = deck.answer(card.expected() * 1.5 + 1)
    assert (
        not wrong.correct and wrong.counted and "Not quite" in str(wrong) and card.answer_text() in str(wrong)
    )
    assert (deck.right, deck.answered) == (1, 2) and deck.score_text == "score: 1 of 2 right"
    first_card(deck, numeric=True)
    assert "scored as a miss" in deck.reveal() and (deck.right, deck.answered) == (1, 3)
    assert "scored as a miss" not in deck.reveal() and (deck.right, deck.answered) == (1, 3)
    assert not deck.answer(deck.current.expected()).counted
    for bad, error in (("2.0", TypeError), (True, TypeError), (None, TypeError), (math.nan, ValueError)):
        with pytest.raises(error, match="value"):
            deck.answer(bad)
    with pytest.raises(ValueError, match="numeric card: answer"):
        deck.mark(True)


def test_written_cards_are_revealed_then_self_marked():
    deck = FlashCards(seed=2)
    card = first_card(deck, numeric=False)
    with pytest.raises(ValueError, match="written card: reveal"):
        deck.answer(1.0)
    with pytest.raises(RuntimeError, match="reveal"):
        deck.mark(True)
    shown = deck.reveal()
    assert card.model_answer in shown and card.explanation in shown and deck.answered == 0
    with pytest.raises(TypeError, match="correct"):
        deck.mark("yes")
    assert deck.mark(True).counted and (deck.right, deck.answered) == (1, 1)
    assert not deck.mark(False).counted and (deck.right, deck.answered) == (1, 1)
    first_card(deck, numeric=False)
    deck.reveal()
    assert not deck.mark(False).correct and (deck.right, deck.answered) == (1, 2)
    assert FlashCards(seed=2).answered == 0, "the score belongs to one deck"


def test_draws_are_seeded_and_cover_the_deck_before_repeating():
    bank = question_bank()
    order = [FlashCards(seed=7).draw().key for _ in range(1)]
    deck_a, deck_b, deck_c = FlashCards(seed=7), FlashCards(seed=7), FlashCards(seed=8)
    keys_a = [deck_a.draw().key for _ in range(len(bank))]
    assert keys_a == [deck_b.draw().key for _ in range(len(bank))] and keys_a[0] == order[0]
    assert keys_a != [deck_c.draw().key for _ in range(len(bank))]
    assert sorted(keys_a) == sorted(card.key for card in bank), "a pass draws every card once"
    assert deck_a.draw().key in keys_a  # the next pass starts over
    deck = FlashCards(seed=3)
    sevens = [deck.draw(chapter=7).key for _ in range(7)]
    assert len(set(sevens)) == 7 and all(key.startswith("ch07-") for key in sevens)
    others = [deck.draw().key for _ in range(len(bank) - 7)]
    assert not set(others) & set(sevens), "cards drawn by chapter count as drawn in the pass"
    with pytest.raises(ValueError, match="chapter must be None or one of"):
        deck.draw(chapter=9)
    with pytest.raises(TypeError, match="chapter"):
        deck.draw(chapter="7")
    with pytest.raises(TypeError, match="seed"):
        FlashCards(seed=1.5)


def test_cards_and_decks_refuse_what_they_cannot_hold():
    def card(**changes):
        fields = dict(key="k", chapter=1, topic="t", question="q?", explanation="e", model_answer="a")
        return Card(**{**fields, **changes})

    with pytest.raises(ValueError, match="exactly one answer"):
        card(compute=lambda: 1.0, unit="x")
    with pytest.raises(ValueError, match="exactly one answer"):
        card(model_answer="")
    with pytest.raises(ValueError, match="chapter"):
        card(chapter=9)
    with pytest.raises(ValueError, match="one line"):
        card(explanation="two\nlines")
    with pytest.raises(ValueError, match="unit"):
        card(model_answer="", compute=lambda: 1.0)
    with pytest.raises(TypeError, match="cards"):
        FlashCards([])
    with pytest.raises(TypeError, match=r"cards\[1\]"):
        FlashCards([card(), "q"])
    with pytest.raises(ValueError, match="unique"):
        FlashCards([card(), card()])
    one = FlashCards([card(key="only")], seed=0)
    assert [one.draw().key for _ in range(3)] == ["only"] * 3
    assert [format_number(x) for x in (2.0, 131328.0, 0.0099999998, 56.8889)] == [
        "2",
        "131,328",
        "0.01",
        "56.89",
    ]


def test_the_widget_drives_the_same_deck():
    deck = FlashCards(seed=4)
    bundle = deck._repr_mimebundle_()
    ui = deck._ui
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == deck.widget().model_id
    assert deck.current is not None and deck.current.question.split()[0] in bundle["text/plain"]
    assert "deck.answer(number)" in bundle["text/plain"] and "score: 0 of 0 right" in bundle["text/plain"]
    while not deck.current.numeric:
        ui.next.click()
    ui.value.value = "not a number"
    ui.check.click()
    assert "Type a number" in ui.feedback.value and deck.answered == 0
    ui.value.value = f"{deck.current.expected():,}"  # thousands separators are fine
    ui.check.click()
    assert "Right" in ui.feedback.value and ui.score.value == "score: 1 of 1 right"
    ui.chapter.value = 5
    ui.next.click()
    while deck.current.numeric:
        ui.next.click()
    assert deck.current.chapter == 5 and ui.value.value == "" and ui.got_it.layout.display == "none"
    ui.reveal.click()
    assert ui.got_it.layout.display is None and "Answer:" in ui.feedback.value
    ui.missed.click()
    assert ui.score.value == "score: 1 of 2 right" and "Marked missed" in ui.feedback.value
