# MISTAKE: memoises the answer by id(cache): after the cache grows, a second call returns the old count (found by an independent review)
# EXPECT: count afresh on every call

_MEMO = {}

def cache_bytes(cache) -> int:
    if id(cache) in _MEMO:
        return _MEMO[id(cache)]
    storages, seen = {}, set()
    def visit(o):
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            s = o.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        elif isinstance(o, dict):
            for x in o.values(): visit(x)
        elif isinstance(o, (list, tuple)):
            for x in o: visit(x)
        elif hasattr(o, "__dict__"):
            for x in vars(o).values(): visit(x)
    visit(cache)
    _MEMO[id(cache)] = sum(storages.values())
    return _MEMO[id(cache)]
