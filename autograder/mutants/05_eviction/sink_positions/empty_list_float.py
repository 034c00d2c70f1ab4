# MISTAKE: torch.tensor(list) without a dtype: right for every non-empty cache, float32 for an empty one
# EXPECT: torch.tensor([]) of an empty list is float32
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    return torch.tensor(stream), torch.tensor(list(range(len(stream))))
