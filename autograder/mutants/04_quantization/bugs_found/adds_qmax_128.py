# MISTAKE: believes qmax must be 128 at 8 bits (statement D)
# EXPECT: D is not a bug
def bugs_found() -> set[str]:
    return {"A", "C", "D", "E"}
