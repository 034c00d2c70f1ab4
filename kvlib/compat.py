"""The old spellings of the model's shape fields, kept for learners' earlier code.

kvlib names a model's shape ``num_layers``, ``num_heads`` (query heads), ``num_kv_heads`` and ``head_dim``
everywhere (issue 12). The course's first chapters shipped with ``n_layers``, ``n_heads`` and
``n_kv_heads`` on :class:`kvlib.model.ModelConfig` and :class:`kvlib.cache.mla.MLAConfig`, and learners
have notebooks and solutions written against them (``cfg.n_layers``,
``dataclasses.replace(cfg, n_kv_heads=2)``), so :func:`old_field_names` keeps those spellings working
on the config dataclasses: as keywords of the constructor (hence of ``dataclasses.replace``) and as
attributes that read and write the new field. New code uses the new names.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

# old name -> new name
OLD_FIELD_NAMES: dict[str, str] = {
    "n_layers": "num_layers",
    "n_heads": "num_heads",
    "n_kv_heads": "num_kv_heads",
}

T = TypeVar("T")


def old_field_names(cls: type[T]) -> type[T]:
    """Class decorator for a dataclass: accept the :data:`OLD_FIELD_NAMES` of its fields as aliases.

    ``cls(n_heads=4)`` means ``cls(num_heads=4)``, and ``obj.n_heads`` reads and sets ``obj.num_heads``.
    When a call names a field both ways the old name wins: ``dataclasses.replace(cfg, n_kv_heads=2)``
    passes every field under its new name too, ``num_kv_heads`` included, so only the old keyword
    carries the change. Fields, ``repr``, equality and ``dataclasses.asdict`` use the new names only.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    table = {old: new for old, new in OLD_FIELD_NAMES.items() if new in names}
    dataclass_init = cls.__init__

    @functools.wraps(dataclass_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for old, new in table.items():
            if old in kwargs:
                kwargs[new] = kwargs.pop(old)
        dataclass_init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    for old, new in table.items():
        setattr(cls, old, _alias(new))
    return cls


def _alias(new: str) -> property:
    def get(self: Any) -> Any:
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        setattr(self, new, value)

    return property(get, set_, doc=f"Old name of ``{new}``, kept for earlier code.")
