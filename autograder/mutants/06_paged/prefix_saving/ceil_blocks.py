# MISTAKE: rounds the system prompt up to whole blocks when counting what is shared
# EXPECT: ceil instead of floor
import math


def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = math.ceil(system_len / block_size) * block_size
    return (users - 1) * shared / (users * (system_len + question_len))
