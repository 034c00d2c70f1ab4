# MISTAKE: counts only the keys
# EXPECT: only the keys
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

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor) and not getattr(visit, 'skip', False):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            for name, value in obj.items():
                if name != 'values':
                    visit(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj[:1] if isinstance(obj, tuple) and len(obj) == 2 else obj:
                visit(value)
        elif hasattr(obj, "__dict__"):
            for name, value in vars(obj).items():
                if name != 'values':
                    visit(value)

    visit(cache)
    return sum(storages.values())
