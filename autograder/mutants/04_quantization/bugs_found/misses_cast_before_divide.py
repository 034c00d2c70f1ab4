# MISTAKE: misses the int8 cast before the division (statement A)
# EXPECT: A is a real bug
def bugs_found() -> set[str]:
    return {"C", "E"}
