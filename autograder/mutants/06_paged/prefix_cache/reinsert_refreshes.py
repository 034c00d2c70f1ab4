# MISTAKE: an insert_block of a prefix that is already cached refreshes its last-use time
# EXPECT: not even the block's last-use time
class PrefixCache:
    """Hash-chain prefix cache of full KV blocks with LRU eviction."""

    def __init__(self, block_size: int, hash_fn=block_hash):
        self.block_size = block_size
        self.hash_fn = hash_fn
        self.buckets = {}  # key -> entries with that key (keys can collide)
        self.by_block = {}  # block_id -> its entry
        self.clock = 0  # advanced once per operation that uses blocks

    def insert_block(self, parent_block, tokens, block_id) -> bool:
        tokens = tuple(tokens)
        parent = None if parent_block is None else self.by_block[parent_block]
        key = self.hash_fn(None if parent is None else parent["key"], tokens)
        for entry in self.buckets.get(key, []):
            if entry["parent"] is parent and entry["tokens"] == tokens:  # this prefix is cached already
                self.clock += 1
                entry["used"] = self.clock
                return entry["block"] == block_id
        self.clock += 1
        entry = {"key": key, "tokens": tokens, "parent": parent, "block": block_id, "children": 0,
                 "locked": True, "used": self.clock, "depth": 0 if parent is None else parent["depth"] + 1}
        self.buckets.setdefault(key, []).append(entry)
        self.by_block[block_id] = entry
        if parent is not None:
            parent["children"] += 1
        return True

    def match(self, prompt) -> list[int]:
        prompt = list(prompt)[:-1]  # the last prompt token is always computed
        matched, parent = [], None
        for start in range(0, len(prompt) - self.block_size + 1, self.block_size):
            tokens = tuple(prompt[start : start + self.block_size])
            key = self.hash_fn(None if parent is None else parent["key"], tokens)
            found = [e for e in self.buckets.get(key, []) if e["parent"] is parent and e["tokens"] == tokens]
            if not found:  # a miss, or a collision: stop at the first block that is not cached
                break
            parent = found[0]
            matched.append(parent)
        if matched:
            self.clock += 1
            for entry in matched:
                entry["used"] = self.clock
        return [entry["block"] for entry in matched]

    def lock(self, block_id) -> None:
        self.by_block[block_id]["locked"] = True

    def unlock(self, block_id) -> None:
        self.clock += 1
        self.by_block[block_id]["locked"] = False
        self.by_block[block_id]["used"] = self.clock

    def evict(self, n) -> list[int]:
        if n > self.num_evictable:
            raise ValueError(f"cannot evict {n} blocks: only {self.num_evictable} are idle")
        evicted = []
        for _ in range(n):  # a scan per block
            leaves = [e for e in self.by_block.values() if not e["locked"] and e["children"] == 0]
            victim = min(leaves, key=lambda e: (e["used"], -e["depth"]))
            del self.by_block[victim["block"]]
            self.buckets[victim["key"]].remove(victim)
            if victim["parent"] is not None:
                victim["parent"]["children"] -= 1
            evicted.append(victim["block"])
        return evicted

    def contains(self, block_id) -> bool:
        return block_id in self.by_block

    @property
    def num_evictable(self) -> int:
        return sum(1 for e in self.by_block.values() if not e["locked"])
