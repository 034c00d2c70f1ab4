# VALID: built from a verdict per statement, letters with stray spaces
def bugs_found() -> set[str]:
    verdicts = {"A": True, "B": False, "C": True, "D": False, "E": True, "F": False, "G": False}
    return {f" {letter} " for letter, real in verdicts.items() if real}
