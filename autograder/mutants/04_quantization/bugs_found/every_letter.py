# MISTAKE: marks every statement as a bug
# EXPECT: B is not a bug
def bugs_found() -> set[str]:
    return set("ABCDEFG")
