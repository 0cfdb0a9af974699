"""The README's configuration tables, rendered from the fields' descriptions (`backend.core.described`):
`python -m backend.core.config_tables [README.md]` rewrites them in place; `tests/test_readme_tables.py` fails when
the README and the code disagree."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from backend.core import params
from backend.core.described import shown_default, shown_range
from backend.core.settings import Settings

BEGIN = "<!-- generated from {source} by `make readme-tables`: edit the descriptions there -->"
END = "<!-- end of generated table -->"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = "empty" if shown_default(f) == '`""`' else shown_default(f)
        rows.append(f"| `{f.name.upper()}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows)


def params_table() -> str:
    rows = ["| key | default | range | meaning |", "| --- | --- | --- | --- |"]
    for cls, prefix in ((params.PredictParams, ""), (params.TrainParams, params.TRAIN_PREFIX)):
        for f in fields(cls):
            valid = shown_range(f, params.MAX_TEXT, params.MAX_MAPPED_LABELS, params.MAX_NAMES_PER_LABEL)
            rows.append(f"| `{prefix}{f.name}` | {shown_default(f)} | {valid} | {f.metadata['doc']} |")
    return "\n".join(rows)


TABLES = {"backend/core/settings.py": settings_table, "backend/core/params.py": params_table}


def with_tables(readme: str) -> str:
    """`readme` with every generated table replaced by what the code says now (`ValueError` when a marker is
    missing)."""
    for source, render in TABLES.items():
        begin = BEGIN.format(source=source)
        start, end = readme.index(begin) + len(begin), readme.index(END, readme.index(begin))
        readme = readme[:start] + "\n" + render() + "\n" + readme[end:]
    return readme


def main(argv: list[str]) -> int:
    """`python -m backend.core.config_tables [README.md]`: rewrite the README's generated tables in place."""
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text()
    updated = with_tables(text)
    if updated != text:
        path.write_text(updated)
        print(f"{path}: tables updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
