"""kvlib.paged.trace: the replay's snapshots are the manager's state, its words name what happened,
the figure draws and the ipywidgets player follows its slider."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kvlib.paged import BlockManager, OutOfBlocks  # noqa: E402
from kvlib.paged.trace import Snapshot, TraceView, draw_snapshot, format_trace, replay  # noqa: E402
from kvlib.paged.tracking import TokenKV  # noqa: E402

pytestmark = pytest.mark.ch06

SYSTEM = [1, 2, 3, 4, 5, 6, 7, 8]
# the notebook's scenario: a shared system prompt, a fork, copy-on-write, frees, evictions, a refusal
SCENARIO = [
    ("allocate", 1, SYSTEM + [20, 21, 22]),
    ("allocate", 2, SYSTEM + [30, 31]),
    ("fork", 1, 3),
    ("append", 3, 40),
    ("append", 1, 23),
    ("append", 1, 24),
    ("free", 2),
    ("free", 3),
    ("free", 1),
    ("allocate", 4, list(range(100, 136))),
    ("allocate", 5, SYSTEM + [50]),
    ("allocate", 6, list(range(200, 210))),
]


@pytest.fixture(scope="module")
def scenario() -> list[Snapshot]:
    return replay(SCENARIO, BlockManager(12, 4, prefix_cache="hash"))


def named(ids: list[int]) -> str:
    return f"block {ids[0]}" if len(ids) == 1 else "blocks " + ", ".join(map(str, ids))


def random_ops(mgr: BlockManager, kv: TokenKV, rng: random.Random, n: int) -> tuple[list[tuple], list[tuple]]:
    """``n`` valid operations chosen from ``mgr``'s state and applied to it (through ``kv``), with the
    state expected after each: ``(tables, lengths, ref counts, free, idle cached, slots, words)``."""
    prefixes = [[rng.randrange(50) for _ in range(6)] for _ in range(3)]
    ops, states, next_id = [], [], 0
    for _ in range(n):
        seqs = sorted(mgr.seqs)
        kind = rng.choice(["allocate", "allocate", "append", "append", "append", "fork", "free", "reclaim"])
        if mgr.num_available_blocks < 3 and rng.random() < 0.7:
            kind = "free"  # keep most steps possible: a full pool would refuse nearly everything
        if kind == "allocate" or not seqs:
            prompt = rng.choice(prefixes)[: rng.randint(1, 6)] + [
                rng.randrange(50) for _ in range(rng.randint(0, 4))
            ]
            op, next_id = ("allocate", next_id, prompt), next_id + 1
        elif kind == "append":
            op = ("append", rng.choice(seqs), rng.randrange(50))
        elif kind == "fork":
            op, next_id = ("fork", rng.choice(seqs), next_id), next_id + 1
        elif kind == "free":
            op = ("free", rng.choice(seqs))
        else:
            op = ("reclaim", rng.randint(0, mgr.cache.num_evictable))
        words = []  # what the step's text must say, from the manager's own answer
        evicted_before = mgr.cache.num_evicted
        try:
            if op[0] == "allocate":
                hit = kv.admit(op[1], op[2]) // mgr.block_size
                if hit:
                    words.append(f"prefix cache hit {named(mgr.block_table(op[1])[:hit])},")
            elif op[0] == "append":
                words += [f"copy-on-write block {src} -> block {dst}" for src, dst in kv.append(op[1], op[2])]
            elif op[0] == "reclaim":
                evicted = sorted(mgr.reclaim(op[1]))
                if evicted:
                    words.append(f"evicted idle cached {named(evicted)}")
            else:
                getattr(mgr, op[0])(*op[1:])
        except OutOfBlocks:
            words.append("out of blocks")
        if mgr.cache.num_evicted > evicted_before:
            words.append("; evicted idle cached block")
        ops.append(op)
        mgr.check_invariants()
        kv.check()
        refs = [mgr.allocator.ref_count(b) for b in range(mgr.num_blocks)]
        free = [mgr.allocator.is_free(b) for b in range(mgr.num_blocks)]
        idle = [mgr.cache.contains(b) and refs[b] == 0 for b in range(mgr.num_blocks)]
        tables = {s: tuple(mgr.block_table(s)) for s in sorted(mgr.seqs)}
        lengths = {s: len(t.tokens) for s, t in mgr.seqs.items()}
        states.append((tables, lengths, refs, free, idle, dict(kv.slots), words))
    return ops, states


@pytest.mark.parametrize("cache", ["hash", "radix"])
@pytest.mark.parametrize("seed", range(4))
def test_snapshots_are_the_managers_state_after_every_step(cache, seed):
    """Replayed on a fresh manager, step k's snapshot is what a manager stepped by hand holds after op k:
    tables, lengths, reference counts, owners, free/used/idle, and the tokens each block's KV holds."""
    expected_mgr = BlockManager(10, 2, prefix_cache=cache)
    ops, states = random_ops(expected_mgr, TokenKV(expected_mgr), random.Random(seed), 150)
    snapshots = replay(ops, BlockManager(10, 2, prefix_cache=cache))
    assert len(snapshots) == len(ops) + 1 and snapshots[0].op is None and snapshots[0].tables == {}
    assert [s.state for s in snapshots[0].blocks] == ["free"] * 10
    for k, (snap, (tables, lengths, refs, free, idle, slots, words)) in enumerate(
        zip(snapshots[1:], states), 1
    ):
        where = f"step {k} {ops[k - 1]!r}"
        assert snap.step == k and snap.op == ops[k - 1], where
        for word in words:
            assert word in snap.text, f"{where}: {snap.text!r} should say {word!r}"
        for claim in ("copy-on-write", "evicted"):
            assert (claim in snap.text) == any(claim in w for w in words), f"{where}: {snap.text!r}"
        assert snap.tables == tables and snap.lengths == lengths, where
        for b in snap.blocks:
            state = "free" if free[b.block_id] else "idle cached" if idle[b.block_id] else "used"
            assert (b.state, b.ref_count) == (state, refs[b.block_id]), f"{where}: block {b.block_id}"
            assert b.owners == tuple(s for s, t in tables.items() if b.block_id in t), where
            assert len(b.owners) == b.ref_count, where
            held = tuple(slots[b.block_id * 2 + o] for o in range(len(b.tokens)))
            assert b.tokens == held, f"{where}: block {b.block_id} holds {held}, snapshot says {b.tokens}"
            assert (b.tokens == ()) == (b.state == "free"), where
            if b.state == "idle cached":
                assert len(b.tokens) == 2, f"{where}: an idle cached block is a full block"


def test_the_words_name_hits_copies_evictions_and_refusals(scenario):
    texts = [s.text for s in scenario]
    assert texts[0] == "start: 12 blocks of 4"
    assert texts[1] == "allocate seq 1 (11 tokens): no prefix cache hit, new blocks 0, 1, 2"
    assert texts[2] == "allocate seq 2 (10 tokens): prefix cache hit blocks 0, 1, new block 3"
    assert texts[3] == "fork seq 1 -> seq 3: shares blocks 0, 1, 2"
    assert texts[4] == "append 40 to seq 3: copy-on-write block 2 -> block 4"
    assert texts[5] == "append 23 to seq 1: written into block 2"
    assert texts[6] == "append 24 to seq 1: new block 5"
    assert texts[7] == "free seq 2: block 3 back on the free list; blocks 0, 1 still used by other sequences"
    assert texts[9] == "free seq 1: block 5 back on the free list; blocks 0, 1, 2 idle in the prefix cache"
    assert texts[10].endswith("new blocks 6, 7, 8, 9, 10, 11, 3, 5, 4; evicted idle cached block 4")
    # the system prompt survives eviction (a parent goes after its children), and is hit again
    assert (
        texts[11]
        == "allocate seq 5 (9 tokens): prefix cache hit blocks 0, 1, new block 2; evicted idle cached block 2"
    )
    assert texts[12] == "allocate seq 6 (10 tokens): out of blocks (needs 3, 0 available), nothing changed"
    assert scenario[12].blocks == scenario[11].blocks and scenario[12].tables == scenario[11].tables
    # an idle cached block keeps showing the tokens it holds; a shared block lists every owner
    assert scenario[9].blocks[4] == scenario[9].blocks[4].__class__(4, "idle cached", 0, (), (20, 21, 22, 40))
    assert scenario[3].blocks[2].owners == (1, 3) and scenario[3].blocks[2].ref_count == 2
    trace = format_trace(scenario, current=4)
    assert trace.splitlines()[4] == ">  4  append 40 to seq 3: copy-on-write block 2 -> block 4"
    assert len(trace.splitlines()) == 13


def test_reclaim_names_the_evicted_blocks():
    snaps = replay(
        [("allocate", 0, [1, 2, 3, 4, 5]), ("free", 0), ("reclaim", 1), ("reclaim", 0)],
        BlockManager(4, 2, "hash"),
    )
    assert snaps[2].text == "free seq 0: block 2 back on the free list; blocks 0, 1 idle in the prefix cache"
    assert snaps[3].text == "reclaim 1; evicted idle cached block 1"  # the leaf: a parent outlives its child
    assert snaps[4].text == "reclaim 0"


class LearnerManager:
    """A learner's manager: the same methods, but allocate returns nothing (no num_cached_tokens), the
    manager has no num_blocks and its allocator no is_free (the notebook's ComposedManager)."""

    def __init__(self) -> None:
        mgr = BlockManager(8, 2, prefix_cache="hash")
        self.block_size, self.seqs, self.cache = 2, mgr.seqs, mgr.cache
        self.allocator = SimpleNamespace(num_blocks=8, ref_count=mgr.allocator.ref_count)
        self.append, self.fork, self.free, self._mgr = mgr.append, mgr.fork, mgr.free, mgr

    def allocate(self, seq_id, prompt):
        self._mgr.allocate(seq_id, prompt)


def test_a_manager_with_the_same_methods_can_be_traced():
    ops = [("allocate", 0, [1, 2, 3, 4, 5]), ("free", 0), ("allocate", 1, [1, 2, 3, 4, 9])]
    snaps = replay(ops, LearnerManager())
    assert snaps[2].text == "free seq 0: block 2 back on the free list; blocks 0, 1 idle in the prefix cache"
    assert snaps[3].text == "allocate seq 1 (5 tokens): prefix cache hit blocks 0, 1, new block 3"
    assert [b.state for b in snaps[2].blocks] == ["idle cached"] * 2 + ["free"] * 6


def test_without_a_prefix_cache_an_unowned_block_is_free():
    snaps = replay([("allocate", 0, [1, 2, 3]), ("free", 0)], BlockManager(3, 2))
    assert snaps[1].text == "allocate seq 0 (3 tokens): no prefix cache hit, new blocks 0, 1"
    assert snaps[2].text == "free seq 0: blocks 0, 1 back on the free list"
    assert {b.state for b in snaps[2].blocks} == {"free"}


@pytest.mark.parametrize(
    ("ops", "error", "words"),
    [
        ("allocate", TypeError, "list of operation tuples"),
        ([("allocate", 0, [1])] * 2 + ["free"], TypeError, "ops[2] must be a tuple"),
        (
            [("alloc", 0, [1])],
            ValueError,
            "ops[0]: unknown operation 'alloc'",
        ),
        ([("append", 0)], ValueError, "append takes (seq_id, token), got 1 argument"),
        ([()], TypeError, "ops[0] must be a tuple"),
        ([(3, 0)], ValueError, "ops[0]: unknown operation 3"),
        ([("allocate", 0, [])], ValueError, "ops[0]: a prompt needs at least one token"),
    ],
)
def test_malformed_ops_are_refused_before_any_runs(ops, error, words):
    mgr = BlockManager(4, 2, prefix_cache="hash")
    with pytest.raises(error, match=re.escape(words)):
        replay(ops, mgr)
    assert mgr.seqs == {} and mgr.num_free_blocks == 4, "a malformed trace must not run its first operations"


def test_an_operation_the_manager_refuses_names_its_step():
    with pytest.raises(ValueError, match=r"step 2 \('free', 7\): the manager refused it") as info:
        replay([("allocate", 0, [1]), ("free", 7)], BlockManager(4, 2))
    assert isinstance(info.value.__cause__, KeyError)


def test_the_figure_draws_every_block_with_its_count_and_the_tables(scenario):
    fig = draw_snapshot(scenario[3], columns=6)  # seq 3 forked from seq 1, seq 2 shares the system prompt
    pool, side = fig.axes
    texts = [t.get_text() for t in pool.texts]
    assert [t for t in texts if t.startswith("ref")] == ["ref 3", "ref 3", "ref 2", "ref 1"] + ["ref 0"] * 8
    assert "1 2 3 4" in texts and "20 21 22" in texts and texts.count("free") == 8
    # one stripe per owner (blocks 0, 1: 3 owners; block 2: 2; block 3: 1), then one outline per block
    assert len(pool.patches) == 3 + 3 + 2 + 1 + 12
    assert [t.get_text() for t in side.texts] == [
        "seq 1 (11 tok): [0, 1, 2]",
        "seq 2 (10 tok): [0, 1, 3]",
        "seq 3 (11 tok): [0, 1, 2]",
    ]
    assert "step 3: fork seq 1 -> seq 3" in fig._suptitle.get_text()
    idle = draw_snapshot(scenario[9]).axes[0].patches
    assert sum(p.get_hatch() == "//" for p in idle) == 4, "blocks 0, 1, 2 and 4 are idle cached: hatched"
    fig.savefig(__import__("io").BytesIO(), format="png")
    with pytest.raises(TypeError, match="Snapshot from replay"):
        draw_snapshot(scenario)
    with pytest.raises(ValueError, match="columns"):
        draw_snapshot(scenario[0], columns=0)


def test_the_player_follows_its_slider_and_shows_a_figure_without_a_front_end(scenario):
    pytest.importorskip("ipywidgets", reason="ipywidgets comes with the course extra")
    view = TraceView(scenario, step=-1)
    assert view.step == 12 and view.slider.max == view.play.max == 12
    assert view.image.value == view.png(12) and view.image.value[:4] == b"\x89PNG"
    assert "<b>&gt; 12: allocate seq 6" in view.trace.value
    view.play.value = 4  # Play drives the slider, the slider the figure and the trace
    assert view.step == 4 and view.image.value == view.png(4) != view.png(12)
    assert "<b>&gt; 4: append 40 to seq 3: copy-on-write block 2 -&gt; block 4</b>" in view.trace.value
    assert view.show(0).step == 0 and view.play.value == 0
    bundle = view._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.widget.model_id
    assert bundle["image/png"] == view.png(0) and bundle["text/plain"] == format_trace(scenario, 0)
    with pytest.raises(ValueError, match="step"):
        view.show(13)
    with pytest.raises(ValueError, match="non-empty list"):
        TraceView([])
    with pytest.raises(TypeError, match=r"snapshots\[1\]"):
        TraceView([scenario[0], "step 1"])
