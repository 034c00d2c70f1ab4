# MISTAKE: sees KV copied to host and blames the PCIe link, without weighing how long the copies take
# EXPECT: small share
def diagnoses() -> dict:
    return {
        "A": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "D": ("host-device (PCIe) bandwidth", "overlap host-device copies with compute"),
    }
