# VALID: the ratio of bytes per token of the MHA twin and the model, from the previous exercise
def gqa_saving_factor(shape):
    return kv_bytes_per_token(dataclasses.replace(shape, num_kv_heads=shape.num_heads)) / kv_bytes_per_token(shape)
