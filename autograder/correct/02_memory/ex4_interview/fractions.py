# VALID: exact integer arithmetic, converted to float at the end (from an independent review)
def interview_answers():
    per_tok_7b = 2 * 32 * 32 * 128 * 2
    per_tok_70b = 2 * 80 * 8 * 128 * 2
    per_tok_70b_mha = 2 * 80 * 64 * 128 * 2
    g = 1 << 30
    return {
        "llama2_7b_4096_fp16": per_tok_7b * 4096 / g,
        "llama2_70b_4096_fp16_if_mha": per_tok_70b_mha * 4096 / g,
        "llama2_70b_4096_fp16": per_tok_70b * 4096 / g,
        "llama2_70b_100x2048_fp16": per_tok_70b * 2048 * 100 / g,
        "system_prompt_1000_users_unshared": per_tok_7b * 1000 * 1000 / g,
        "system_prompt_1000_users_shared": float(per_tok_7b * 1000 / g),
    }
