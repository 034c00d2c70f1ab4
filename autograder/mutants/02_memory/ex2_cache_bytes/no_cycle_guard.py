# MISTAKE: no visited-set: infinite recursion on a cache whose objects point back at each other (and repeated visits) (found by an independent review)
# EXPECT: visit each object once
def cache_bytes(cache) -> int:
    storages = {}
    def visit(o):
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
    return sum(storages.values())
