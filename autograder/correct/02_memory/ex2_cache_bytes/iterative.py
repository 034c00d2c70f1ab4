# VALID: iterative stack walk, storages keyed by data_ptr (from an independent review)

def cache_bytes(cache) -> int:
    stack, seen, storages = [cache], set(), {}
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if torch.is_tensor(o):
            st = o.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set)):
            stack.extend(o)
        elif hasattr(o, "__dict__"):
            stack.extend(vars(o).values())
    return int(sum(storages.values()))
