"""Errors of the OAuth endpoints and of access-token checks.

OAuth errors are answered as RFC 6749 JSON (`error`, `error_description`), not as
OperationOutcomes, so they do not derive from FhirError.
"""

from __future__ import annotations

from typing import Any, Literal

OAuthErrorCode = Literal[
    "invalid_client",
    "invalid_request",
    "invalid_grant",
    "invalid_scope",
    "unsupported_grant_type",
]


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer of the token endpoint."""

    def __init__(self, error: OAuthErrorCode, description: str, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        # 401 only for invalid_client when the client used HTTP Basic (RFC 6749 §5.2).
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class TokenError(Exception):
    """An access token that must not be honoured (bad signature, expired, wrong audience...)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
