# MISTAKE: forgets that one copy of the shared blocks is still stored
# EXPECT: users copies saved instead of users - 1
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = system_len // block_size * block_size
    return users * shared / (users * (system_len + question_len))
