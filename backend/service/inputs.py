"""Parsing of what callers send: JSON bodies, ids and query parameters, each refused with a 400 naming the field.

JSON: at most `MAX_JSON_DEPTH` levels of nesting, no NaN / Infinity (not JSON, and they poison stored params).
Ids: whole numbers 1..2**63-1 written in ASCII digits (what SQLite and Label Studio store; "²" or "١٢" are not ids,
and no number longer than 40 digits is ever converted); a project may come as "<id>.<timestamp>".
"""

from __future__ import annotations

import json
import re
from typing import Any

from backend.core.errors import BadRequest

MAX_ID = 2**63 - 1
MAX_JSON_DEPTH = 64
_PROJECT = re.compile(r"[ \t]*([0-9]{1,40})(?:\.([0-9]{1,40}))?[ \t]*")  # "<id>" or "<id>.<timestamp>", fullmatch
_DIGITS = re.compile(r"[0-9]{1,40}")  # longer: never converted
_INTEGER = re.compile(r"-?[0-9]{1,40}")


def parse_json_object(data: bytes | str, what: str = "request body") -> dict:
    """JSON text → dict; `BadRequest` (naming `what`) for malformed, non-object, too deeply nested or NaN-bearing
    JSON."""
    def refuse(name: str):
        raise BadRequest(f"{what} is not valid JSON: {name} is not a JSON number")

    try:
        parsed = json.loads(data or b"null", parse_constant=refuse)
    except RecursionError:
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"{what} must be a JSON object")
    if depth(parsed) > MAX_JSON_DEPTH:
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return parsed


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_id(raw: Any, field: str) -> int:
    """A whole number 1..2**63-1 given as an int or a string of digits; `BadRequest` naming `field`."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadRequest(f"{field} must be a whole number, got {_show(raw)}")
    text = str(raw).strip(" \t") if isinstance(raw, str) else str(raw)
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise BadRequest(f"{field} must be a whole number between 1 and {MAX_ID}, got {_show(raw)}")
    return int(text)


def parse_project_id(raw: Any, required: bool = False) -> int | None:
    """Label Studio sends the project as "<id>.<timestamp>" (string) or an int; None when absent (unless
    `required`)."""
    if raw is None or raw == "":
        if required:
            raise BadRequest("'project' is required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadRequest(f"project must be '<id>' or '<id>.<timestamp>', got {_show(raw)}")
    match = _PROJECT.fullmatch(str(raw))
    if match is None:
        raise BadRequest(f"project must be '<id>' or '<id>.<timestamp>', got {_show(raw)}")
    return parse_id(match.group(1), "project")


def optional_id(raw: Any) -> int | None:
    """An id from a body that is only a hint (webhooks): the id, or None when absent or not a valid id."""
    try:
        return parse_id(raw, "id") if raw is not None else None
    except BadRequest:
        return None


def query_int(args, name: str, default: int | None, low: int, high: int) -> int | None:
    """Query parameter `name` as an int in [low, high] (`default` when absent); `BadRequest` otherwise."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw.strip(" \t")) or not low <= int(raw) <= high:
        raise BadRequest(f"query parameter {name!r} must be a whole number in [{low}, {high}], got {_show(raw)}")
    return int(raw)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"
