"""FHIR interactions as plain async functions: no HTTP here, so Bundles reuse them."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from app.fhir import repository as repo
from app.fhir.context import Context
from app.fhir.outcomes import FhirError, not_found, outcome
from app.fhir.patch import apply_fhirpath_patch, apply_json_patch
from app.fhir.search.engine import search_ids
from app.fhir.types import ID_RE, RESTRICTED, SUPPORTED
from app.fhir.validation import check_structure


@dataclass
class Result:
    """What an interaction produced; the HTTP layer or a Bundle renders it."""

    status: int
    body: bytes | None = None
    resource_type: str | None = None
    res_id: str | None = None
    version: int | None = None
    last_updated: datetime | None = None
    location: str | None = None
    is_resource: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    base: str = ""

    def outcome_for_prefer(self) -> bytes:
        text = f"{self.resource_type}/{self.res_id} written, version {self.version}"
        return orjson.dumps(outcome("informational", text, severity="information"))


def check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED:
        raise FhirError(404, "not-supported", f"Resource type '{resource_type}' is not supported")


def check_id(res_id: str) -> None:
    if not ID_RE.match(res_id):
        raise FhirError(400, "invalid", f"'{res_id}' is not a valid FHIR id")


def check_restricted(resource_type: str, interaction: str) -> None:
    if interaction in RESTRICTED.get(resource_type, frozenset()):
        raise FhirError(405, "not-supported", f"{interaction} is not allowed on {resource_type}")


def check_allowed(ctx: Context, resource_type: str, interaction: str) -> None:
    check_restricted(resource_type, interaction)
    ctx.policy.check_interaction(resource_type, interaction)


def parse_version(vid: str) -> int:
    if not vid.isdigit() or len(vid) > 9:
        raise not_found(f"Version '{vid}' not found")
    return int(vid)


def _stored_result(status: int, resource_type: str, res_id: str, row: Any) -> Result:
    return Result(
        status=status,
        body=row.content.encode(),
        resource_type=resource_type,
        res_id=res_id,
        version=row.version,
        last_updated=row.last_updated,
    )


async def read(ctx: Context, resource_type: str, res_id: str) -> Result:
    check_type(resource_type)
    check_allowed(ctx, resource_type, "read")
    row = await repo.read_current(ctx, resource_type, res_id, "read")
    if row is None:
        raise not_found(f"{resource_type}/{res_id} not found")
    if row.deleted:
        raise FhirError(410, "deleted", f"{resource_type}/{res_id} has been deleted")
    return _stored_result(200, resource_type, res_id, row)


async def vread(ctx: Context, resource_type: str, res_id: str, vid: str) -> Result:
    check_type(resource_type)
    check_allowed(ctx, resource_type, "vread")
    version = parse_version(vid)
    row = await repo.read_version(ctx, resource_type, res_id, version)
    if row is None:
        raise not_found(f"{resource_type}/{res_id}/_history/{vid} not found")
    if row.deleted:
        raise FhirError(410, "deleted", f"{resource_type}/{res_id} version {vid} is a deletion")
    return _stored_result(200, resource_type, res_id, row)


async def create(
    ctx: Context,
    resource_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    assigned_id: str | None = None,
) -> Result:
    check_type(resource_type)
    check_allowed(ctx, resource_type, "create")
    resource = check_structure(body, resource_type)
    if if_none_exist:
        found = await _conditional_matches(ctx, resource_type, if_none_exist)
        if len(found) > 1:
            raise FhirError(412, "duplicate", "If-None-Exist matched more than one resource")
        if found:
            existing = await read(ctx, resource_type, found[0])
            existing.status = 200
            return existing
    res_id = assigned_id or str(uuid.uuid4())
    return await _write(ctx, resource_type, res_id, resource, None, "POST")


async def update(
    ctx: Context,
    resource_type: str,
    res_id: str,
    body: Any,
    *,
    if_match: int | None = None,
) -> Result:
    check_type(resource_type)
    check_restricted(resource_type, "update")
    check_id(res_id)
    resource = check_structure(body, resource_type)
    body_id = resource.get("id")
    if body_id is None:
        raise FhirError(400, "required", "The resource must carry its id on update")
    if body_id != res_id:
        raise FhirError(
            400,
            "invalid",
            f"Body id '{body_id}' does not match URL id '{res_id}'",
            expression=["id"],
        )
    current = await repo.lock_current(ctx, resource_type, res_id, "update")
    if current is not None and not current.visible:
        raise not_found(f"{resource_type}/{res_id} not found")
    exists = current is not None and not current.deleted
    check_allowed(ctx, resource_type, "update" if exists else "create")
    _check_writable(ctx, resource_type, res_id)
    if if_match is not None and (current is None or current.version != if_match):
        raise FhirError(
            412,
            "conflict",
            f"Version {if_match} is not the current version of {resource_type}/{res_id}",
        )
    return await _write(ctx, resource_type, res_id, resource, current, "PUT")


async def conditional_update(
    ctx: Context,
    resource_type: str,
    query: list[tuple[str, str]],
    body: Any,
    *,
    if_match: int | None = None,
) -> Result:
    check_type(resource_type)
    found = await search_ids(ctx, resource_type, query, limit=2)
    if len(found) > 1:
        raise FhirError(412, "multiple-matches", "The condition matched more than one resource")
    if not found:
        resource = check_structure(body, resource_type)
        res_id = resource.get("id") or str(uuid.uuid4())
        return await update(ctx, resource_type, res_id, {**resource, "id": res_id})
    body_id = body.get("id") if isinstance(body, dict) else None
    if body_id is not None and body_id != found[0]:
        raise FhirError(400, "invalid", "The body id does not match the resource found")
    return await update(
        ctx,
        resource_type,
        found[0],
        {**body, "id": found[0]} if isinstance(body, dict) else body,
        if_match=if_match,
    )


async def patch(
    ctx: Context,
    resource_type: str,
    res_id: str,
    patch_body: Any,
    *,
    kind: str,
    if_match: int | None = None,
) -> Result:
    check_type(resource_type)
    check_allowed(ctx, resource_type, "patch")
    current = await repo.lock_current(ctx, resource_type, res_id, "patch")
    if current is None or not current.visible:
        raise not_found(f"{resource_type}/{res_id} not found")
    if current.deleted or current.content is None:
        raise FhirError(410, "deleted", f"{resource_type}/{res_id} has been deleted")
    if if_match is not None and current.version != if_match:
        raise FhirError(412, "conflict", f"Version {if_match} is not current")
    _check_writable(ctx, resource_type, res_id)
    existing = orjson.loads(current.content)
    if kind == "json-patch":
        patched = apply_json_patch(existing, patch_body)
    else:
        patched = apply_fhirpath_patch(existing, patch_body)
    if patched.get("id") != res_id or patched.get("resourceType") != resource_type:
        raise FhirError(422, "processing", "A patch may not change the id or resourceType")
    resource = check_structure(patched, resource_type)
    return await _write(ctx, resource_type, res_id, resource, current, "PATCH")


async def delete(ctx: Context, resource_type: str, res_id: str) -> Result:
    check_type(resource_type)
    check_allowed(ctx, resource_type, "delete")
    current = await repo.lock_current(ctx, resource_type, res_id, "delete")
    if current is None or not current.visible:
        raise not_found(f"{resource_type}/{res_id} not found")
    if current.deleted:
        return Result(status=204, resource_type=resource_type, res_id=res_id, is_resource=False)
    _check_writable(ctx, resource_type, res_id)
    previous = orjson.loads(current.content) if current.content else None
    # A deletion keeps the compartment and label of the version it deletes, so the
    # access filter treats it like that version (a hidden resource stays hidden).
    beneficiary, domain = ctx.plugins.labeler(copy.deepcopy(previous)) if previous else (None, None)
    ts = repo.now_utc()
    stored = await repo.write_version(
        ctx,
        resource_type,
        res_id,
        None,
        version=current.version + 1,
        method="DELETE",
        previous=previous,
        exists=True,
        timestamp=ts,
        beneficiary=beneficiary,
        domain=domain,
    )
    return Result(
        status=204,
        resource_type=resource_type,
        res_id=res_id,
        version=stored.version,
        last_updated=ts,
        is_resource=False,
    )


async def conditional_delete(
    ctx: Context, resource_type: str, query: list[tuple[str, str]]
) -> Result:
    check_type(resource_type)
    found = await search_ids(ctx, resource_type, query, limit=2)
    if len(found) > 1:
        raise FhirError(412, "multiple-matches", "The condition matched more than one resource")
    if not found:
        return Result(status=204, resource_type=resource_type, is_resource=False)
    return await delete(ctx, resource_type, found[0])


async def _conditional_matches(ctx: Context, resource_type: str, condition: str) -> list[str]:
    from urllib.parse import parse_qsl

    query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
    if not query:
        raise FhirError(400, "invalid", f"Malformed condition '{condition}'")
    return await search_ids(ctx, resource_type, query, limit=2)


def _check_writable(ctx: Context, resource_type: str, res_id: str) -> None:
    if ctx.plugins.read_only(resource_type, res_id):
        raise FhirError(
            405, "not-supported", f"{resource_type}/{res_id} is published by Relais and read-only"
        )


async def _write(
    ctx: Context,
    resource_type: str,
    res_id: str,
    resource: dict[str, Any],
    current: repo.Current | None,
    method: str,
) -> Result:
    previous = None
    if current is not None and not current.deleted and current.content:
        previous = orjson.loads(current.content)
    version = current.version + 1 if current is not None else 1
    ts = repo.now_utc()
    resource = dict(resource)
    resource["id"] = res_id
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = repo.instant(ts)
    resource["meta"] = meta
    for validator in ctx.plugins.validators:
        await validator(ctx, resource, previous)
    beneficiary, domain = ctx.plugins.labeler(resource)
    ctx.policy.check_write(resource_type, resource, domain)
    stored = await repo.write_version(
        ctx,
        resource_type,
        res_id,
        resource,
        version=version,
        method=method,
        previous=previous,
        exists=current is not None,
        timestamp=ts,
        beneficiary=beneficiary,
        domain=domain,
    )
    created = current is None or current.deleted
    return Result(
        status=201 if created else 200,
        body=orjson.dumps(resource),
        resource_type=resource_type,
        res_id=res_id,
        version=stored.version,
        last_updated=ts,
        location=f"{ctx.base_url}/{resource_type}/{res_id}/_history/{version}",
    )
