# VALID: an explicit stack instead of recursion, storages keyed on (device, data_ptr)
def cache_bytes(cache):
    found, stack = {}, [cache]
    while stack:
        obj = stack.pop()
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
