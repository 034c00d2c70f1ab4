# VALID: an explicit stack instead of recursion, objects visited once by id, storages keyed on (device, data_ptr)
def cache_bytes(cache):
    found, stack, visited = {}, [cache], set()
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        if isinstance(obj, torch.Tensor):
            s = obj.untyped_storage()
            found[(obj.device, s.data_ptr())] = s.nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif hasattr(obj, '__dict__'):
            stack.extend(vars(obj).values())
    return sum(found.values())
