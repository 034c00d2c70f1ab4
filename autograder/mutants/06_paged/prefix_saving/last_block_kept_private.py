# MISTAKE: keeps the system prompt's last block private even when it is full
# EXPECT: fills its last block exactly
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = max(system_len - 1, 0) // block_size * block_size
    return (users - 1) * shared / (users * (system_len + question_len))
