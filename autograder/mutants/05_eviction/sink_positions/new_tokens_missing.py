# MISTAKE: returns only the kept keys, forgetting the new tokens the update appends
# EXPECT: new tokens are missing
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen))
    return torch.tensor(stream, dtype=torch.long), torch.arange(len(stream))
