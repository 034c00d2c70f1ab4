# MISTAKE: takes the window as the last min(seen, window) of all seen tokens, so sinks appear twice early on
# EXPECT: counted again in the window
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(seen, window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    return torch.tensor(stream, dtype=torch.long), torch.arange(len(stream))
