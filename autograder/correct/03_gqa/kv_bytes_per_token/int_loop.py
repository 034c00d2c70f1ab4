# VALID: sums over layers explicitly (from an independent review)
def kv_bytes_per_token(shape, bytes_per_element=2):
    total = 0
    for _layer in range(shape.num_layers):
        total += 2 * shape.num_kv_heads * shape.head_dim * int(bytes_per_element)
    return total
