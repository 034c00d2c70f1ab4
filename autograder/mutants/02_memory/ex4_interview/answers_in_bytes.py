# MISTAKE: returns the sizes in bytes, not GiB
# EXPECT: number of bytes
def interview_answers() -> dict[str, float]:
    """KV-cache sizes in GiB (2**30 bytes) for the questions in the cell above, keyed:

    "llama2_7b_4096_fp16", "llama2_70b_4096_fp16_if_mha", "llama2_70b_4096_fp16",
    "llama2_70b_100x2048_fp16", "system_prompt_1000_users_unshared", "system_prompt_1000_users_shared".
    """
    GiB = 2**30

    def size(layers, num_kv_heads, head_dim, tokens, batch, bytes_per_element=2):
        return 2 * layers * num_kv_heads * head_dim * tokens * batch * bytes_per_element

    return {
        "llama2_7b_4096_fp16": size(32, 32, 128, 4096, 1),
        "llama2_70b_4096_fp16_if_mha": size(80, 64, 128, 4096, 1),
        "llama2_70b_4096_fp16": size(80, 8, 128, 4096, 1),
        "llama2_70b_100x2048_fp16": size(80, 8, 128, 2048, 100),
        "system_prompt_1000_users_unshared": size(32, 32, 128, 1000, 1000),
        "system_prompt_1000_users_shared": size(32, 32, 128, 1000, 1),
    }
