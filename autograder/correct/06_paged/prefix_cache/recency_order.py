# VALID: no clock at all: an OrderedDict keeps the cached blocks from least to most recently used (move_to_end on every use, a match's blocks moved root first), buckets are dicts keyed by (parent block, tokens), and evict takes the first idle block without cached children in that order
from collections import OrderedDict


class PrefixCache:
    """Hash-chain prefix cache of full KV blocks with LRU eviction."""

    def __init__(self, block_size: int, hash_fn=block_hash):
        self.block_size = block_size
        self.hash_fn = hash_fn
        self.table = {}  # key -> {(parent block or None, tokens): block}
        self.key_of = {}  # block -> its key
        self.parent_of = {}  # block -> parent block or None
        self.tokens_of = {}  # block -> its tokens
        self.children = {}  # block -> set of cached child blocks
        self.locked = set()
        self.recency = OrderedDict()  # every cached block, least recently used first

    def _key(self, parent_block, tokens):
        return self.hash_fn(None if parent_block is None else self.key_of[parent_block], tokens)

    def insert_block(self, parent_block, tokens, block_id) -> bool:
        tokens = tuple(tokens)
        key = self._key(parent_block, tokens)
        bucket = self.table.setdefault(key, {})
        if (parent_block, tokens) in bucket:
            return bucket[(parent_block, tokens)] == block_id
        bucket[(parent_block, tokens)] = block_id
        self.key_of[block_id] = key
        self.parent_of[block_id] = parent_block
        self.tokens_of[block_id] = tokens
        self.children[block_id] = set()
        if parent_block is not None:
            self.children[parent_block].add(block_id)
        self.locked.add(block_id)
        self.recency[block_id] = None  # newest
        return True

    def match(self, prompt) -> list[int]:
        usable = len(prompt) - 1  # the last prompt token is always computed
        matched, parent = [], None
        for i in range(usable // self.block_size):
            tokens = tuple(prompt[i * self.block_size : (i + 1) * self.block_size])
            block = self.table.get(self._key(parent, tokens), {}).get((parent, tokens))
            if block is None:
                break
            matched.append(block)
            parent = block
        for block in matched:  # root first: a parent never looks older than its child
            self.recency.move_to_end(block)
        return matched

    def lock(self, block_id) -> None:
        self.locked.add(block_id)

    def unlock(self, block_id) -> None:
        self.locked.discard(block_id)
        self.recency.move_to_end(block_id)

    def evict(self, n) -> list[int]:
        if n > self.num_evictable:
            raise ValueError(f"evict({n}): only {self.num_evictable} blocks are idle")
        out = []
        while len(out) < n:
            victim = next(b for b in self.recency if b not in self.locked and not self.children[b])
            parent = self.parent_of.pop(victim)
            del self.table[self.key_of.pop(victim)][(parent, self.tokens_of.pop(victim))]
            del self.children[victim], self.recency[victim]
            if parent is not None:
                self.children[parent].discard(victim)
            out.append(victim)
        return out

    def contains(self, block_id) -> bool:
        return block_id in self.parent_of

    @property
    def num_evictable(self) -> int:
        return len(self.parent_of) - len(self.locked)
