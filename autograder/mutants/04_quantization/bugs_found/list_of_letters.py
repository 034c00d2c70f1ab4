# MISTAKE: returns the right letters as a list, not the set the docstring asks for
# EXPECT: must return a set
def bugs_found() -> set[str]:
    return ["A", "C", "E"]
