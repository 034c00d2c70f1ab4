# VALID: entries are small objects in a list per key; evict picks the least recently used idle block over ALL idle blocks (no leaf test), deeper first on equal times: with a parent always in use while a child is, and a match stamping the whole chain, a parent is never older than its idle child, so that block is always a leaf
class _Entry:
    __slots__ = ("key", "tokens", "parent", "block", "depth", "locked", "used")

    def __init__(self, key, tokens, parent, block, used):
        self.key, self.tokens, self.parent, self.block = key, tokens, parent, block
        self.depth = 0 if parent is None else parent.depth + 1
        self.locked, self.used = True, used


class PrefixCache:
    """Hash-chain prefix cache of full KV blocks with LRU eviction."""

    def __init__(self, block_size: int, hash_fn=block_hash):
        self.size = block_size
        self.hash_fn = hash_fn
        self.by_key = {}
        self.entries = {}
        self.now = 0

    def _find(self, parent, tokens):
        key = self.hash_fn(parent.key if parent else None, tokens)
        for e in self.by_key.get(key, ()):
            if e.parent is parent and e.tokens == tokens:
                return key, e
        return key, None

    def insert_block(self, parent_block, tokens, block_id) -> bool:
        parent = self.entries[parent_block] if parent_block is not None else None
        key, found = self._find(parent, tuple(tokens))
        if found is not None:
            return found.block == block_id
        self.now += 1
        entry = _Entry(key, tuple(tokens), parent, block_id, self.now)
        self.by_key.setdefault(key, []).append(entry)
        self.entries[block_id] = entry
        return True

    def match(self, prompt) -> list[int]:
        tokens = prompt[:-1]
        chain, parent = [], None
        n = len(tokens) // self.size
        while len(chain) < n:
            start = len(chain) * self.size
            _, entry = self._find(parent, tuple(tokens[start : start + self.size]))
            if entry is None:
                break
            chain.append(entry)
            parent = entry
        self.now += 1
        for entry in chain:
            entry.used = self.now
        return [entry.block for entry in chain]

    def lock(self, block_id) -> None:
        self.entries[block_id].locked = True

    def unlock(self, block_id) -> None:
        self.now += 1
        entry = self.entries[block_id]
        entry.locked, entry.used = False, self.now

    def evict(self, n) -> list[int]:
        idle = sorted((e for e in self.entries.values() if not e.locked), key=lambda e: (e.used, -e.depth))
        if len(idle) < n:
            raise ValueError(f"only {len(idle)} idle blocks, cannot evict {n}")
        victims = idle[:n]  # one sort: evicting a block never changes the others' order
        for e in victims:
            del self.entries[e.block]
            self.by_key[e.key].remove(e)
        return [e.block for e in victims]

    def contains(self, block_id) -> bool:
        return block_id in self.entries

    @property
    def num_evictable(self) -> int:
        return sum(not e.locked for e in self.entries.values())
