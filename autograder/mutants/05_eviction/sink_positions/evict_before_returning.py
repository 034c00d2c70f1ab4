# MISTAKE: appends the new tokens first and evicts before returning, so a chunk's own early tokens are dropped
# EXPECT: added before evicting
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    total = seen + new_tokens
    sinks = list(range(min(total, num_sinks)))
    recent = min(max(total - num_sinks, 0), window)
    stream = sinks + list(range(total - recent, total))
    return torch.tensor(stream, dtype=torch.long), torch.arange(len(stream))
