# VALID: labels taken from the menus by position, pairs as lists instead of tuples
def diagnoses() -> dict:
    return {
        "A": [BOTTLENECKS[3], FIXES[1]],
        "B": [BOTTLENECKS[1], FIXES[6]],
        "C": [BOTTLENECKS[5], FIXES[5]],
        "D": [BOTTLENECKS[6], FIXES[3]],
    }
