"""Small builders shared by the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

FHIR = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Dupont", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Hélène"]}],
        "gender": "female",
        "birthDate": "1984-03-02",
    }
    body.update(extra)
    return body


def identifier(system: str, value: str) -> list[dict[str, str]]:
    return [{"system": system, "value": value}]


def etag_version(response: Any) -> int:
    return int(response.headers["etag"].removeprefix('W/"').removesuffix('"'))


@contextmanager
def watching(state: Any, listener: Callable[..., None]) -> Iterator[None]:
    """`listener` on before_cursor_execute of every pool of the app (the main one, and
    the one whose reads are planned once, on PostgreSQL)."""
    engines = [e.sync_engine for e in (state.engine, state.planned_once) if e is not None]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", listener)
