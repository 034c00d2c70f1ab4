# MISTAKE: returns the letters as one string
# EXPECT: not one string
def bugs_found() -> set[str]:
    return "ACE"
