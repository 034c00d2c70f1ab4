# MISTAKE: walks with a work list that starts as the cache's own list and pops from it, emptying the cache
# EXPECT: changed the cache
def cache_bytes(cache) -> int:
    """Bytes of tensor memory held by `cache`, whatever its layout.

    Find every torch.Tensor reachable from `cache` through lists, tuples, dicts and object
    attributes (vars(obj)); e.g. a transformers DynamicCache keeps them in cache.layers[i].keys.
    Count the memory each tensor keeps alive: its storage, t.untyped_storage().nbytes(), and count
    each storage once (two views of one buffer, or one tensor stored twice, hold it only once;
    key on t.untyped_storage().data_ptr()).
    """
    storages: dict[int, int] = {}
    seen: set[int] = set()
    storages: dict[int, int] = {}
    todo = cache if isinstance(cache, list) else [cache]
    while todo:
        obj = todo.pop()
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)
        elif hasattr(obj, "__dict__"):
            todo.extend(vars(obj).values())
    return sum(storages.values())
