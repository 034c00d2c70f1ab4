# VALID: the union of the sinks and the last window of all seen tokens (a set removes the overlap), NumPy int64 then torch.from_numpy, returned as a list
import numpy as np


def sink_positions(seen: int, new_tokens: int, num_sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    kept = set(range(min(seen, num_sinks))) | set(range(max(0, seen - window), seen))
    stream = np.array(sorted(kept) + list(range(seen, seen + new_tokens)), dtype=np.int64)
    rope = np.arange(len(stream), dtype=np.int64)
    return [torch.from_numpy(stream), torch.from_numpy(rope)]
