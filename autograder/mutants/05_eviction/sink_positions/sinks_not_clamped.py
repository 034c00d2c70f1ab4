# MISTAKE: always lists num_sinks sinks, even before that many tokens were seen
# EXPECT: sinks past what was seen
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = torch.arange(num_sinks)
    recent = min(max(seen - num_sinks, 0), window)
    stream = torch.cat([sinks, torch.arange(seen - recent, seen + new_tokens)])
    return stream, torch.arange(len(stream))
