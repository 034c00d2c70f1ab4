# VALID: numpy.bool_ verdicts, '(A)' as the letter, numbers as float and numpy.float64
import numpy as np
def find_the_errors():
    return {'claim_a_is_correct': np.bool_(False), 'claim_a_true_gib': 2,
            'claim_a_mistake': '(A)', 'claim_b_is_correct': False,
            'claim_b_memory_exponent': 1.0, 'claim_b_attention_scores_exponent': np.float64(2)}
