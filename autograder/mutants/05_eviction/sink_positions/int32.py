# MISTAKE: builds the positions as int32, not torch.long
# EXPECT: int32 is not torch.long
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    return torch.tensor(stream, dtype=torch.int32), torch.arange(len(stream), dtype=torch.int32)
