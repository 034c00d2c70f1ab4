# MISTAKE: finds only the bug the printout makes most visible
# EXPECT: C is a real bug
def bugs_found() -> set[str]:
    return {"A"}
