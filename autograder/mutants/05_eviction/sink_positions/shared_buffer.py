# MISTAKE: fills one preallocated buffer kept between calls (to avoid allocating), so an earlier result changes
# EXPECT: changed after a later call
_stream_buffer = torch.empty(0, dtype=torch.long)


def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    global _stream_buffer
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    stream = sinks + list(range(seen - recent, seen)) + list(range(seen, seen + new_tokens))
    n = len(stream)
    if _stream_buffer.numel() < n:
        _stream_buffer = torch.empty(2 * n, dtype=torch.long)
    _stream_buffer[:n] = torch.tensor(stream, dtype=torch.long)
    return _stream_buffer[:n], torch.arange(n)
