# MISTAKE: believes per-token keys can never be correct (statement F)
# EXPECT: F is not a bug
def bugs_found() -> set[str]:
    return {"A", "C", "E", "F"}
