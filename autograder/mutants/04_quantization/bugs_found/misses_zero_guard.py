# MISTAKE: misses that a token of zeros divides 0 by 0 (statement E)
# EXPECT: E is a real bug
def bugs_found() -> set[str]:
    return {"A", "C"}
