# MISTAKE: rotates the cached keys at their cache index but the new tokens (the queries) at their stream positions
# EXPECT: the queries take the last new_tokens
def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    kept = sinks + list(range(seen - recent, seen))
    new = list(range(seen, seen + new_tokens))
    rope = list(range(len(kept))) + new
    return torch.tensor(kept + new, dtype=torch.long), torch.tensor(rope, dtype=torch.long)
