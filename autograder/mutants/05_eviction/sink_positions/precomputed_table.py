# MISTAKE: slices a precomputed table of 4096 positions, too short for a cache past 4096 keys
# EXPECT: one position per key
_POSITIONS = torch.arange(4096)


def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    return torch.tensor(stream, dtype=torch.long), _POSITIONS[: len(stream)]
