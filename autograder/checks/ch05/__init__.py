"""Checks for chapter 05 (evicting tokens and pruning heads): the ring-buffer window cache, a sink
cache's positions, H2O's score update and keep choice, a head-importance score and the memory a
pruning plan saves. One module per exercise (H2O's two and the head exercises share one each); the
notebook's test cells call the names re-exported here.
"""

from .h2o import h2o_keep_hidden, h2o_keep_visible, h2o_scores_hidden, h2o_scores_visible
from .heads import distant_attention_hidden, distant_attention_visible
from .pruned import pruned_fraction_hidden, pruned_fraction_visible
from .sinks import sink_positions_hidden, sink_positions_visible
from .window import window_cache_hidden, window_cache_visible

__all__ = [
    "distant_attention_hidden",
    "distant_attention_visible",
    "h2o_keep_hidden",
    "h2o_keep_visible",
    "h2o_scores_hidden",
    "h2o_scores_visible",
    "pruned_fraction_hidden",
    "pruned_fraction_visible",
    "sink_positions_hidden",
    "sink_positions_visible",
    "window_cache_hidden",
    "window_cache_visible",
]
