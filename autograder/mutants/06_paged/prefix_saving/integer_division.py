# MISTAKE: floor-divides at the end, so every share comes out as 0
# EXPECT: you returned the int 0
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = system_len // block_size * block_size
    return (users - 1) * shared // (users * (system_len + question_len))
