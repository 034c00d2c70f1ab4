# MISTAKE: returns the int 0 early when nothing can be shared
# EXPECT: you returned the int 0
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = system_len // block_size * block_size
    if users == 1 or shared == 0:
        return 0
    return (users - 1) * shared / (users * (system_len + question_len))
