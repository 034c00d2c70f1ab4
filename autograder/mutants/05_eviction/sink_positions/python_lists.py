# MISTAKE: returns Python lists instead of torch.long tensors
# EXPECT: must be a torch.long tensor, got a Python list
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    return stream, list(range(len(stream)))
