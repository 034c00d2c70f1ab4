# MISTAKE: the window starts one token too early (seen - window - 1), keeping window + 1 recent tokens
# EXPECT: one token too many
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = torch.arange(min(seen, num_sinks))
    start = max(num_sinks, seen - window - 1)
    recent = torch.arange(start, seen)
    new = torch.arange(seen, seen + new_tokens)
    stream = torch.cat([sinks, recent, new])
    return stream, torch.arange(stream.numel())
