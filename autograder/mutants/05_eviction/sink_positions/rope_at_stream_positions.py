# MISTAKE: rotates every key at its stream position (what caching rotated keys amounts to)
# EXPECT: caching rotated keys
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    positions = torch.tensor(stream, dtype=torch.long)
    return positions, positions.clone()
