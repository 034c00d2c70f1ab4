# MISTAKE: thinks the table used the wrong batch size
# EXPECT: batch
def find_the_errors() -> dict:
    """Your verdicts on claims A and B (see the cell above), keyed:

    "claim_a_is_correct" (bool), "claim_a_true_gib" (float, GiB), "claim_a_mistake" ("a".."d"),
    "claim_b_is_correct" (bool), "claim_b_memory_exponent" (k in: KV bytes grow like seq_len**k),
    "claim_b_attention_scores_exponent" (k in: attention scores of one forward pass over n tokens
    grow like n**k).
    """
    return {
        "claim_a_is_correct": False,
        "claim_a_true_gib": 2 * 32 * 32 * 128 * 4096 * 2 / 2**30,
        "claim_a_mistake": "c",
        "claim_b_is_correct": False,
        "claim_b_memory_exponent": 1,
        "claim_b_attention_scores_exponent": 2,
    }
