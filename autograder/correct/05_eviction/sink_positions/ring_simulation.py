# VALID: simulates the cache token by token (sinks list, a deque of maxlen window), positions as Python ints
from collections import deque


def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    sinks, recent = [], deque(maxlen=window)
    for position in range(seen):
        if len(sinks) < num_sinks:
            sinks.append(position)
        else:
            recent.append(position)
    stream = sinks + list(recent) + [seen + i for i in range(new_tokens)]
    return torch.tensor(stream, dtype=torch.int64), torch.tensor(range(len(stream)), dtype=torch.int64)
