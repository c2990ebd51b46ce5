"""Printing results: JSON only with ``--json``, otherwise a plain aligned table or key list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """An aligned text table of ``columns``; an empty list prints a dash line."""
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
               .rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit_object(data: dict[str, Any], skip: Sequence[str] = ()) -> None:
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key not in skip:
            typer.echo(f"{key.ljust(width)}  {_cell(value)}")


def emit(data: Any, as_json: bool, columns: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
    """Print ``data`` (a list → table, a dict → key list) or, with ``as_json``, JSON only."""
    if as_json:
        emit_json(data)
    elif isinstance(data, list):
        emit_table(data, columns)
    else:
        emit_object(data, skip)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
