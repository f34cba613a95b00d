"""Sets of time as sorted disjoint half-open spans, for periods of grants.

FHIR periods are inclusive at the precision written: a date-only end "2026-05-31"
runs to the end of that day, so it becomes the exclusive bound 2026-06-01T00:00Z.
Dates and date-times without a zone are read as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

Span = tuple[datetime, datetime]  # [start, end)
Times = list[Span]

NEVER = datetime(1, 1, 2, tzinfo=UTC)
FOREVER = datetime(9999, 12, 30, tzinfo=UTC)
ALWAYS: Times = [(NEVER, FOREVER)]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_bound(value: Any, *, end: bool) -> datetime | None:
    """A FHIR date or dateTime as an instant: its start, or (end=True) the start of
    the next unit of its precision. None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    match = _DATE.match(value)
    if match:
        year, month, day = match.groups()
        try:
            if day:
                start = datetime(int(year), int(month), int(day), tzinfo=UTC)
                return start + timedelta(days=1) if end else start
            if month:
                start = datetime(int(year), int(month), 1, tzinfo=UTC)
                if not end:
                    return start
                return datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=UTC)
            return datetime(int(year) + (1 if end else 0), 1, 1, tzinfo=UTC)
        except ValueError:
            return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant


def period(value: Any) -> Times:
    """A FHIR Period as a set of time; an unreadable bound is treated as absent on the
    start and as already past on the end, so a malformed end never extends access."""
    if not isinstance(value, dict):
        return list(ALWAYS)
    start = parse_bound(value.get("start"), end=False) if "start" in value else NEVER
    stop = parse_bound(value.get("end"), end=True) if "end" in value else FOREVER
    start = start or NEVER
    if stop is None:
        return []
    return [(start, stop)] if start < stop else []


def normalise(spans: list[Span]) -> Times:
    merged: Times = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def union(*sets: Times) -> Times:
    return normalise([span for times in sets for span in times])


def intersect(a: Times, b: Times) -> Times:
    out = []
    for a_start, a_end in a:
        for b_start, b_end in b:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                out.append((start, end))
    return normalise(out)


def subtract(a: Times, b: Times) -> Times:
    out: Times = []
    for start, end in a:
        pieces = [(start, end)]
        for b_start, b_end in b:
            next_pieces = []
            for p_start, p_end in pieces:
                if b_end <= p_start or b_start >= p_end:
                    next_pieces.append((p_start, p_end))
                    continue
                if p_start < b_start:
                    next_pieces.append((p_start, b_start))
                if b_end < p_end:
                    next_pieces.append((b_end, p_end))
            pieces = next_pieces
        out.extend(pieces)
    return normalise(out)


def bounds(span: Span) -> tuple[datetime | None, datetime | None]:
    """Storage form: open ends as NULL."""
    start, end = span
    return (None if start <= NEVER else start), (None if end >= FOREVER else end)
