"""$validate: every check a write would run, without storing anything.

`POST [base]/{type}/$validate` (create) and `POST [base]/{type}/{id}/$validate` (update;
`mode=delete` checks a deletion). The body is the resource, or a Parameters with
`resource` and optionally `mode` and `profile`. The answer is always 200 with an
OperationOutcome: its issues when the resource would be refused, else "All OK".
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from app.fhir import interactions as fx
from app.fhir import repository as repo
from app.fhir.context import Context, OperationCall, Plugins
from app.fhir.outcomes import FhirError
from app.fhir.references import DEFERRED
from app.fhir.types import SUPPORTED_TYPES
from app.fhir.validation import check_structure

MODES = ("create", "update", "delete")
ALL_OK = {"severity": "information", "code": "informational", "diagnostics": "All OK"}


def register(plugins: Plugins) -> None:
    for resource_type in SUPPORTED_TYPES:
        plugins.operations[(resource_type, False, "validate")] = validate
        plugins.operations[(resource_type, True, "validate")] = validate


def _read_request(body: Any, query: list[tuple[str, str]]) -> tuple[Any, str | None, str | None]:
    """(resource, mode, profile) from the body and the query."""
    params = dict(query)
    mode, profile = params.get("mode"), params.get("profile")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for param in body.get("parameter") or []:
            if not isinstance(param, dict):
                continue
            name = param.get("name")
            if name == "resource":
                resource = param.get("resource")
            elif name == "mode":
                mode = param.get("valueCode") or param.get("valueString")
            elif name == "profile":
                profile = param.get("valueUri") or param.get("valueCanonical")
        return resource, mode, profile
    return body, mode, profile


def _issues(err: FhirError) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = err.to_outcome()["issue"]
    return issues


async def validate(
    ctx: Context,
    call: OperationCall,
) -> fx.Result:
    resource_type, res_id = call.resource_type, call.res_id
    if resource_type is None:
        raise FhirError(404, "not-supported", "$validate is invoked on a resource type")
    if call.method != "POST":
        raise FhirError(405, "not-supported", "$validate takes a POST")
    resource, mode, profile = _read_request(call.body, call.query)
    mode = mode or ("update" if res_id else "create")
    if mode not in MODES:
        raise FhirError(400, "invalid", f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode != "create" and res_id is None:
        raise FhirError(400, "invalid", f"mode={mode} is invoked on an instance: {{type}}/{{id}}")
    ctx.policy.check_interaction(resource_type, mode)
    if mode == "delete":
        issues = await _deletion_issues(ctx, resource_type, str(res_id))
    else:
        if not isinstance(resource, dict):
            raise FhirError(400, "invalid", "$validate needs a resource (or Parameters.resource)")
        issues = await _write_issues(ctx, resource_type, res_id, mode, resource)
    if profile:
        issues.append(
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"Profile {profile} was not checked: Relais validates against "
                "the base R4B definitions and its own rules",
            }
        )
    if not any(i["severity"] in ("error", "fatal") for i in issues):
        issues.insert(0, ALL_OK)
    body_out = orjson.dumps({"resourceType": "OperationOutcome", "issue": issues})
    return fx.Result(status=200, body=body_out, is_resource=False)


async def _deletion_issues(ctx: Context, resource_type: str, res_id: str) -> list[dict[str, Any]]:
    current = await repo.read_current(ctx, resource_type, res_id, "delete")
    if current is None or current.deleted:
        raise FhirError(404, "not-found", f"{resource_type}/{res_id} not found")
    try:
        fx.check_restricted(resource_type, "delete")
        if ctx.plugins.read_only(resource_type, res_id):
            raise FhirError(405, "not-supported", f"{resource_type}/{res_id} is read-only")
    except FhirError as err:
        return _issues(err)
    return []


async def _write_issues(
    ctx: Context, resource_type: str, res_id: str | None, mode: str, resource: dict[str, Any]
) -> list[dict[str, Any]]:
    resource = copy.deepcopy(resource)
    try:
        check_structure(resource, resource_type)
        fx.check_restricted(resource_type, mode)
    except FhirError as err:
        return _issues(err)  # the later checks assume a well-formed resource
    issues: list[dict[str, Any]] = []
    previous = None
    version = 1
    if res_id is not None:
        if resource.get("id") not in (None, res_id):
            issues.append(_id_mismatch(resource.get("id"), res_id))
        resource["id"] = res_id
        current = await repo.read_current(ctx, resource_type, res_id, "update")
        if current is not None:
            version = current.version + 1
            if not current.deleted and current.content:
                previous = orjson.loads(current.content)
        if ctx.plugins.read_only(resource_type, res_id):
            issues.append(_error("not-supported", f"{resource_type}/{res_id} is read-only"))
    # As a write would store it: the version tells the policy a create from an update.
    resource["meta"] = {**(resource.get("meta") or {}), "versionId": str(version)}
    # Validators check references at once here, even inside a transaction Bundle.
    deferred = ctx.extra.pop(DEFERRED, None)
    try:
        # A savepoint rolled back afterwards: whatever a validator does is not kept.
        async with ctx.conn.begin_nested() as savepoint:
            for validator in ctx.plugins.validators:
                try:
                    await validator(ctx, resource, previous)
                except FhirError as err:
                    issues.extend(i for i in _issues(err) if i not in issues)
            try:
                _beneficiary, domain = ctx.plugins.labeler(resource)
                ctx.policy.check_write(resource_type, resource, domain)
            except FhirError as err:
                issues.extend(_issues(err))
            await savepoint.rollback()
    finally:
        if deferred is not None:
            ctx.extra[DEFERRED] = deferred
    return issues


def _error(code: str, diagnostics: str) -> dict[str, Any]:
    return {"severity": "error", "code": code, "diagnostics": diagnostics}


def _id_mismatch(body_id: Any, res_id: str) -> dict[str, Any]:
    issue = _error("invalid", f"Body id '{body_id}' does not match URL id '{res_id}'")
    issue["expression"] = ["id"]
    return issue
