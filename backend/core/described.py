"""Fields that carry their own description: each setting and each per-project param is described once, where it is
declared (`described`), and the README's configuration tables are generated from those descriptions
(`backend.core.config_tables`; `python -m backend.core.config_tables` rewrites them).

Field metadata: `doc` (what it means, Markdown), `shown` (the README's default cell when the value alone would
mislead, e.g. "(from `/setup`)"), `range` (inclusive numeric (low, high)), `choices` (the values accepted),
`valid` (the README's range cell when neither says it).
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field
from typing import Any, Callable


def described(default: Any = MISSING, *, doc: str, factory: Callable[[], Any] | None = None, shown: str = "",
              range: tuple[float, float] | None = None, choices: tuple | None = None, valid: str = "") -> Any:
    """A dataclass field with its description (see the module docstring for the metadata)."""
    metadata = {"doc": doc, "shown": shown, "range": range, "choices": choices, "valid": valid}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def number(value: float) -> str:
    """1.0 → "1", 0.25 → "0.25"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def shown_default(f: Field) -> str:
    """The README's default cell of a field."""
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    value = default_of(f)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{number(value)}`"
    if isinstance(value, (dict, tuple)) and not value:
        return "`{}`" if isinstance(value, dict) else "empty"
    return f"`{value}`" if value != "" else '`""`'


def shown_range(f: Field, max_text: int, max_labels: int, max_names: int) -> str:
    """The README's range cell of a per-project param."""
    meta, value = f.metadata, default_of(f)
    if meta.get("valid"):
        return meta["valid"]
    if meta.get("choices"):
        return ", ".join(str(c) for c in meta["choices"])
    if meta.get("range"):
        low, high = meta["range"]
        return f"{number(low)}–{number(high)}"
    if isinstance(value, bool):
        return "true, false"
    if isinstance(value, dict):
        return f"≤ {max_labels} labels, ≤ {max_names} strings each"
    return f"≤ {max_text} characters"
