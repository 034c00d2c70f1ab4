"""The old field names of ModelConfig and MLAConfig (n_layers, n_heads, n_kv_heads) keep working.

kvlib's vocabulary is num_layers / num_heads / num_kv_heads / head_dim (issue 12); learners wrote code
against the old spellings, e.g. chapter 03's ``dataclasses.replace(cfg, n_kv_heads=2)``.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from kvlib.cache.gqa import config_kv_bytes_per_token, convert_mha_to_gqa, kv_saving_factor
from kvlib.cache.mla import DEEPSEEK_V2_MLA, MLAConfig
from kvlib.compat import OLD_FIELD_NAMES
from kvlib.model import ModelConfig, TinyDecoder
from kvlib.train import build_parser

pytestmark = pytest.mark.model

NEW = dict(vocab_size=97, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, ffn_dim=48, max_seq_len=64)
OLD = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, max_seq_len=64)


def test_old_keywords_build_the_same_config_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning noise in learners' notebooks
        assert ModelConfig(**OLD) == ModelConfig(**NEW)
        assert ModelConfig(32, 16, 3) == ModelConfig(vocab_size=32, dim=16, num_layers=3)  # positional


def test_old_names_read_and_write_the_new_fields() -> None:
    cfg = ModelConfig(**NEW)
    for old, new in OLD_FIELD_NAMES.items():
        assert getattr(cfg, old) == getattr(cfg, new)
    cfg.n_kv_heads = 4
    assert cfg.num_kv_heads == 4
    cfg.n_heads = 3  # not re-checked on assignment, as for the new names: validate() catches it
    with pytest.raises(ValueError, match="num_heads"):
        cfg.validate()


def test_fields_repr_and_asdict_use_the_new_names_only() -> None:
    cfg = ModelConfig(**OLD)
    names = [f.name for f in dataclasses.fields(cfg)]
    assert "num_kv_heads" in names and not set(OLD_FIELD_NAMES) & set(names)
    assert "num_kv_heads=2" in repr(cfg) and "n_kv_heads" not in repr(cfg)
    assert set(dataclasses.asdict(cfg)) == set(names)


def test_dataclasses_replace_with_an_old_keyword() -> None:
    cfg = ModelConfig(**NEW)
    for (old, new), value in zip(OLD_FIELD_NAMES.items(), (1, 2, 1)):  # layers, heads, KV heads
        changed = dataclasses.replace(cfg, **{old: value})
        assert getattr(changed, new) == value != getattr(cfg, new)
        assert dataclasses.replace(changed, **{new: getattr(cfg, new)}) == cfg
    assert dataclasses.replace(cfg, n_kv_heads=1) == dataclasses.replace(cfg, num_kv_heads=1)


def test_old_keywords_are_validated_under_the_new_name() -> None:
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig(**(OLD | {"n_kv_heads": 3}))
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_kv_head'"):
        ModelConfig(num_kv_head=2)  # a typo is still an error


def test_a_model_built_with_old_names_runs_and_converts() -> None:
    torch.manual_seed(0)
    mha = TinyDecoder(ModelConfig(**(OLD | {"n_kv_heads": 4}))).eval()
    gqa = convert_mha_to_gqa(mha, 2)
    assert gqa.config.n_kv_heads == gqa.config.num_kv_heads == 2
    assert config_kv_bytes_per_token(gqa.config) * 2 == config_kv_bytes_per_token(mha.config)
    assert kv_saving_factor(gqa.config) == 2.0
    with torch.no_grad():
        assert gqa(torch.tensor([[1, 2, 3]])).shape == (1, 3, 97)


def test_mla_config_old_names() -> None:
    cfg = MLAConfig(dim=256, n_heads=8, head_dim=32, kv_latent_dim=64, rope_dim=16)  # chapter 03's cell
    assert cfg == MLAConfig(dim=256, num_heads=8, head_dim=32, kv_latent_dim=64, rope_dim=16)
    assert (cfg.n_heads, cfg.n_layers) == (8, 1)
    assert (DEEPSEEK_V2_MLA.n_layers, DEEPSEEK_V2_MLA.n_heads) == (60, 128)
    assert dataclasses.replace(cfg, n_layers=3).num_layers == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_heads = 4  # frozen, like its fields


def test_train_accepts_the_old_flags() -> None:
    """The shipped MODEL_CARD.md commands say --n-kv-heads."""
    old = build_parser().parse_args(["--n-layers", "3", "--n-heads", "4", "--n-kv-heads", "2"])
    new = build_parser().parse_args(["--num-layers", "3", "--num-heads", "4", "--num-kv-heads", "2"])
    assert vars(old) == vars(new) and (new.num_layers, new.num_heads, new.num_kv_heads) == (3, 4, 2)
