"""FastAPI dependency for routes outside the FHIR dispatcher (adapters): the caller's
policy, from the bearer token the access middleware already checked."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.fhir.access import AccessPolicy
from app.state import AppState


async def current_policy(request: Request) -> AccessPolicy:
    state: AppState = request.app.state.relais
    return await state.policy_for(request)


Caller = Annotated[AccessPolicy, Depends(current_policy)]
