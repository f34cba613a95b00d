"""One error format: FhirError -> OperationOutcome."""

from __future__ import annotations

from typing import Any

import orjson

# HTTP status for each issue code when the raiser does not say otherwise.
DEFAULT_STATUS = {
    "invalid": 400,
    "structure": 400,
    "required": 422,
    "value": 422,
    "invariant": 422,
    "business-rule": 422,
    "code-invalid": 422,
    "security": 401,
    "login": 401,
    "forbidden": 403,
    "not-found": 404,
    "not-supported": 405,
    "conflict": 409,
    "deleted": 410,
    "too-long": 413,
    "processing": 422,
    "throttled": 429,
    "exception": 500,
    "informational": 200,
}


def outcome(
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FhirError(Exception):
    """An error a partner can cause; rendered as an OperationOutcome."""

    def __init__(
        self,
        status: int | None,
        code: str,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status if status is not None else DEFAULT_STATUS.get(code, 400)
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.extra_issues = issues or []
        self.headers = headers or {}

    def to_outcome(self) -> dict[str, Any]:
        body = outcome(self.code, self.diagnostics, expression=self.expression)
        body["issue"].extend(self.extra_issues)
        return body

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_outcome())


def invalid(diagnostics: str, *, expression: list[str] | None = None) -> FhirError:
    return FhirError(422, "invalid", diagnostics, expression=expression)


def bad_request(diagnostics: str) -> FhirError:
    return FhirError(400, "invalid", diagnostics)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, "not-found", diagnostics)


def forbidden(diagnostics: str) -> FhirError:
    return FhirError(403, "forbidden", diagnostics)
