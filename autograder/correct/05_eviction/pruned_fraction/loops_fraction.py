# VALID: loops over layers and heads in Python, summing each head's tokens as an exact Fraction, then float()
from fractions import Fraction


def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    held = dense = 0
    for layer in full_heads.tolist():
        for full in layer:
            held += seq_len if full else min(seq_len, num_sinks + window)
            dense += seq_len
    return float(Fraction(held, dense))
