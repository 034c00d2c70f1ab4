# MISTAKE: deduplicates storages on t.data_ptr(), which differs for two views of one buffer at different offsets
# EXPECT: not t.data_ptr()
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
    seen: set[int] = set()

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storages[obj.data_ptr()] = obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                visit(value)
        elif hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                visit(value)

    visit(cache)
    return sum(storages.values())
