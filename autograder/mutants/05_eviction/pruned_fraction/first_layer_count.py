# MISTAKE: assumes every layer has as many full heads as layer 0
# EXPECT: layer 0 used for every layer
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    num_layers, num_kv_heads = full_heads.shape
    full_per_layer = int(full_heads[0].sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    per_layer = full_per_layer * seq_len + (num_kv_heads - full_per_layer) * streaming_tokens
    return num_layers * per_layer / (num_layers * num_kv_heads * seq_len)
