"""Checks for chapter 03 (MQA and GQA): repeat_kv, grouped attention with a KV-heads-only cache,
MHA -> GQA conversion by mean-pooling, KV bytes per token of real models, the saving factor, and
the MLA bonus. One module per exercise; the notebook's test cells call the names re-exported here.

Every check builds its own inputs and compares the learner's function with kvlib's reference.
When the output is wrong it recomputes the classic wrong variants (tiled heads instead of
grouped, missing or misplaced causal mask, sum instead of mean, ...) and names the one matched.
"""

from .convert import convert_to_gqa_hidden, convert_to_gqa_visible
from .grouped_attention import grouped_attention_step_hidden, grouped_attention_step_visible
from .kv_bytes import kv_bytes_per_token_hidden, kv_bytes_per_token_visible
from .latent import expand_latent_hidden, expand_latent_visible
from .repeat_kv import repeat_kv_hidden, repeat_kv_visible
from .saving_factor import saving_factor_hidden, saving_factor_visible

__all__ = [
    "convert_to_gqa_hidden",
    "convert_to_gqa_visible",
    "expand_latent_hidden",
    "expand_latent_visible",
    "grouped_attention_step_hidden",
    "grouped_attention_step_visible",
    "kv_bytes_per_token_hidden",
    "kv_bytes_per_token_visible",
    "repeat_kv_hidden",
    "repeat_kv_visible",
    "saving_factor_hidden",
    "saving_factor_visible",
]
