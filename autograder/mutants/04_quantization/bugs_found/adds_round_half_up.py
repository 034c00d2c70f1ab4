# MISTAKE: believes torch.round is biased and floor(x + 0.5) is needed (statement G)
# EXPECT: G is not a bug
def bugs_found() -> set[str]:
    return {"A", "C", "E", "G"}
