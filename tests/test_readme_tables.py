"""The README's configuration tables agree with the code: they are generated from the fields' descriptions
(`backend.core.described`, rendered by `backend.core.config_tables`) and must equal what the code renders now; and,
checked independently of the renderer, every environment setting (`Settings`) and every extra param (`PredictParams`,
`TrainParams` as `train_*`) has exactly one row, with the code's default, and each param's range or choices as
`RANGES` / `CHOICES` say; no row names something the code does not read.
"""

import math
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from backend.core.config_tables import with_tables
from backend.core.described import described, shown_default, shown_range
from backend.core.params import CHOICES, RANGES, TRAIN_PREFIX, PredictParams, TrainParams, extra_keys
from backend.core.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table(after: str) -> list[list[str]]:
    """The cells of the first Markdown table after the line starting with `after` (header and rule skipped)."""
    lines = README[README.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


PARAM_ROWS = _table("Per-project *Extra params*")
SETTING_ROWS = _table("Read once at start-up into one typed `Settings` object")


def _code(cell: str) -> str:
    """The first `code` span of a cell (its text when there is none)."""
    found = re.search(r"`([^`]*)`", cell)
    return found.group(1) if found else cell


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _param_defaults() -> dict:
    defaults = {}
    for cls, prefix in ((PredictParams, ""), (TrainParams, TRAIN_PREFIX)):
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()
            defaults[prefix + f.name] = default
    return defaults


def _shown_default(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, dict):
        return "{}" if not value else repr(value)
    return value


def test_every_extra_param_has_one_row_and_no_row_is_unknown():
    keys = [_code(row[0]) for row in PARAM_ROWS]
    assert sorted(keys) == sorted(set(keys)), "a param has two rows"
    assert sorted(keys) == extra_keys()


@pytest.mark.parametrize("row", PARAM_ROWS, ids=[_code(r[0]) for r in PARAM_ROWS])
def test_each_param_row_shows_the_code_default_and_range(row):
    key, default_cell, range_cell = _code(row[0]), row[1], row[2]
    default = _param_defaults()[key]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        assert math.isclose(float(_code(default_cell)), default), (key, default_cell)
    else:
        shown = '""' if default == "" else _shown_default(default)
        assert _code(default_cell) == shown, (key, default_cell)
    if key in CHOICES:
        assert range_cell == ", ".join(str(c) for c in CHOICES[key]), (key, range_cell)
    elif key in RANGES:
        low, high = RANGES[key]
        assert range_cell == f"{_number(low)}–{_number(high)}", (key, range_cell)
    elif isinstance(default, bool):
        assert range_cell == "true, false", (key, range_cell)


def test_every_setting_has_one_row_and_no_row_is_unknown():
    names = [name for row in SETTING_ROWS for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])]
    assert sorted(names) == sorted(set(names)), "a setting has two rows"
    assert sorted(names) == sorted(f.name.upper() for f in fields(Settings))


@pytest.mark.parametrize("row", SETTING_ROWS, ids=[r[0] for r in SETTING_ROWS])
def test_each_setting_row_shows_the_code_default(row):
    for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0]):
        default = getattr(Settings(), name.lower())
        cell = row[1]
        if default in ("", ()) or name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
            assert cell in ("empty", "(from `/setup`)"), (name, cell)
        elif isinstance(default, bool):
            assert _code(cell) == str(default).lower(), (name, cell)
        elif isinstance(default, (int, float)):
            assert math.isclose(float(_code(cell)), float(default)), (name, cell)
        elif isinstance(default, Path):
            assert Path(_code(cell)) == default, (name, cell)
        else:
            assert _code(cell) == default, (name, cell)


def test_the_generated_tables_are_what_the_code_says_now():
    """Edit a description in the code, then run `python -m backend.core.config_tables` to update the README."""
    assert with_tables(README) == README


@pytest.mark.parametrize("cls", [Settings, PredictParams, TrainParams])
def test_every_field_is_described(cls):
    assert [f.name for f in fields(cls) if not f.metadata.get("doc", "").strip()] == []


def test_every_numeric_param_has_a_range_or_choices():
    defaults = _param_defaults()
    numeric = [k for k, v in defaults.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert [k for k in numeric if k not in RANGES and k not in CHOICES] == []


@pytest.mark.parametrize("spec,default_cell,range_cell", [
    (dict(default=0.5, range=(0.0, 1.0)), "`0.5`", "0–1"),
    (dict(default=1.0, range=(0.0, 86_400.0)), "`1`", "0–86400"),
    (dict(default=3, choices=(1, 2, 4)), "`3`", "1, 2, 4"),
    (dict(default=True), "`true`", "true, false"),
    (dict(default=""), '`""`', "≤ 200 characters"),
    (dict(factory=dict), "`{}`", "≤ 1000 labels, ≤ 50 strings each"),
    (dict(default="", shown="(from `/setup`)", valid="`a`, `b`"), "(from `/setup`)", "`a`, `b`"),
])
def test_cells_render_from_the_description(spec, default_cell, range_cell):
    from dataclasses import dataclass

    @dataclass
    class One:
        x: object = described(doc="x", **spec)

    (f,) = fields(One)
    assert shown_default(f) == default_cell and shown_range(f, 200, 1000, 50) == range_cell
