# MISTAKE: returns a fractions.Fraction, not a Python float (found by an independent review)
# EXPECT: must return a Python float
from fractions import Fraction
def gqa_saving_factor(shape):
    return Fraction(shape.num_heads, shape.num_kv_heads)
