# VALID: a boolean keep mask over every seen position (sink or among the last window), then torch.cat and arange
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    seen_positions = torch.arange(seen)
    keep = (seen_positions < num_sinks) | (seen_positions >= seen - window)
    stream = torch.cat([seen_positions[keep], torch.arange(seen, seen + new_tokens)])
    return stream, torch.arange(stream.numel())
