"""The call metadata fields of SPEC §3/§5 and their validation, shared by CSV rows and uploads.

A bad value is dropped (never guessed) and reported as a warning; unknown fields are kept as
custom metadata.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

STANDARD_FIELDS = (
    "agent_name",
    "agent_code",
    "call_type",
    "call_date",
    "customer_id",
    "disposition",
    "client_reference",
)
CALL_TYPES = frozenset({"INBOUND", "OUTBOUND"})
_NAME_TOKEN_SPLIT = re.compile(r"[_\-. ]+")


def clean(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validated metadata and the warnings for values that were dropped.

    Empty values are left out. ``call_type`` is upper-cased; ``call_date`` must be
    ``YYYY-MM-DD`` or ISO 8601 and is kept as given.
    """
    result: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in raw.items():
        text = value.strip() if isinstance(value, str) else value
        if text in (None, ""):
            continue
        if key == "call_type":
            upper = str(text).upper()
            if upper not in CALL_TYPES:
                warnings.append(f"call_type {text!r} dropped: expected INBOUND or OUTBOUND")
                continue
            text = upper
        elif key == "call_date" and not _is_date(str(text)):
            warnings.append(f"call_date {text!r} dropped: not a valid YYYY-MM-DD or ISO 8601 date")
            continue
        result[key] = text
    return result, warnings


def name_tokens(file_name: str) -> list[str]:
    """The tokens of a file name (without extension) split on ``_``, ``-``, ``.`` and space."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return [t for t in _NAME_TOKEN_SPLIT.split(stem) if t]


def _is_date(text: str) -> bool:
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
