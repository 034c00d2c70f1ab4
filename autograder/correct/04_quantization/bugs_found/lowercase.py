# VALID: lower-case letters (the docstring names letters; case carries no meaning)
def bugs_found() -> set[str]:
    return {"a", "c", "e"}
