# MISTAKE: rounds the answer to two decimals for a tidy printout
# EXPECT: do not round
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = system_len // block_size * block_size
    return round((users - 1) * shared / (users * (system_len + question_len)), 2)
