"""Answering an ASGI request directly, for the code that runs ahead of the routes."""

from __future__ import annotations

from starlette.types import Send

from app.fhir.outcomes import FhirError

OUTCOME_TYPE = "application/fhir+json; charset=utf-8"


async def send_response(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_outcome(send: Send, err: FhirError) -> None:
    headers = {"content-type": OUTCOME_TYPE, **err.headers}
    await send_response(send, err.status, headers, err.to_bytes())
