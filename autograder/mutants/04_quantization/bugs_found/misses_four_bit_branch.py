# MISTAKE: misses that the 4-bit branch returns two values (statement C)
# EXPECT: C is a real bug
def bugs_found() -> set[str]:
    return {"A", "E"}
