# MISTAKE: numbers the statements instead of naming their letters
# EXPECT: letters (str)
def bugs_found() -> set[str]:
    return {1, 3, 5}
