# MISTAKE: believes the scale should be the mean of |x| (statement B)
# EXPECT: B is not a bug
def bugs_found() -> set[str]:
    return {"A", "B", "C", "E"}
