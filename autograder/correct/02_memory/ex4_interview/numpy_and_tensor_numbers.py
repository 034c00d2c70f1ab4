# VALID: NumPy floats and a one-element tensor as answers
import numpy as np
def interview_answers():
    def gib(L, H, T, B):
        return np.float64(2 * L * H * 128 * T * B * 2) / np.float64(1024**3)
    return {'llama2_7b_4096_fp16': gib(32, 32, 4096, 1),
            'llama2_70b_4096_fp16_if_mha': gib(80, 64, 4096, 1),
            'llama2_70b_4096_fp16': gib(80, 8, 4096, 1),
            'llama2_70b_100x2048_fp16': gib(80, 8, 2048, 100),
            'system_prompt_1000_users_unshared': gib(32, 32, 1000, 1000),
            'system_prompt_1000_users_shared': torch.tensor(gib(32, 32, 1000, 1))}
