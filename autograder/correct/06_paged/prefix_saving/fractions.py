# VALID: exact arithmetic with fractions, converted to float at the end
from fractions import Fraction


def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared_once = Fraction(system_len // block_size * block_size)
    return float((users - 1) * shared_once / (users * (system_len + question_len)))
