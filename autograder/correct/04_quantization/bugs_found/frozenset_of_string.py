# VALID: a frozenset built from one string
def bugs_found() -> set[str]:
    return frozenset("ACE")
