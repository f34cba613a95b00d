"""Access tokens: RFC 9068 JWTs signed with the server key, five minutes at most."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import JWSRegistry

from app.auth.errors import TokenError
from app.auth.keys import SigningKey, key_alg, key_id

MAX_LIFETIME = 300
TOKEN_TYPE = "at+jwt"  # RFC 9068: keeps other JWTs (client assertions) from passing as tokens


@dataclass(frozen=True)
class AccessClaims:
    client_id: str
    organization: str
    scope: str
    all_beneficiaries: bool
    issued_at: int
    expires_at: int
    jti: str


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    client_id: str,
    organization: str,
    scope: str,
    all_beneficiaries: bool,
    lifetime: int = MAX_LIFETIME,
    now: float,
) -> tuple[str, int]:
    """Sign an access token; returns (token, expires_in seconds)."""
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ValueError(f"access token lifetime must be 1..{MAX_LIFETIME} s")
    iat = int(now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "org": organization,
        "scope": scope,
        "all_beneficiaries": all_beneficiaries,
        "iat": iat,
        "exp": iat + lifetime,
        "jti": uuid.uuid4().hex,
    }
    alg = key_alg(key)
    header = {"alg": alg, "kid": key_id(key), "typ": TOKEN_TYPE}
    token = jwt.encode(header, claims, key, registry=_registry(alg), default_type=None)
    return token, lifetime


_REGISTRIES: dict[str, JWSRegistry] = {}


def _registry(alg: str) -> JWSRegistry:
    if alg not in _REGISTRIES:
        _REGISTRIES[alg] = JWSRegistry(algorithms=[alg])
    return _REGISTRIES[alg]


def verify_access_token(
    token: str, key: SigningKey, *, issuer: str, audience: str, now: float
) -> AccessClaims:
    """Check signature (exactly the server's alg and key), type, expiry, audience, issuer."""
    alg = key_alg(key)
    try:
        decoded = jwt.decode(token, key, registry=_registry(alg))
    except BadSignatureError:
        raise TokenError("access token signature is invalid") from None
    except (JoseError, ValueError) as exc:
        raise TokenError(f"access token is malformed or not signed with {alg}: {exc}") from None
    header, claims = decoded.header, decoded.claims
    if header.get("typ") != TOKEN_TYPE:
        raise TokenError(f"not an access token (typ must be {TOKEN_TYPE})")
    if header.get("kid") not in (None, key_id(key)):
        raise TokenError("access token was signed with another key")
    if claims.get("iss") != issuer:
        raise TokenError("access token was issued by another server")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise TokenError("access token is meant for another audience")
    exp = _int_claim(claims, "exp")
    iat = _int_claim(claims, "iat")
    if now >= exp:
        raise TokenError("access token has expired")
    return AccessClaims(
        client_id=_str_claim(claims, "client_id"),
        organization=_str_claim(claims, "org"),
        scope=_str_claim(claims, "scope"),
        all_beneficiaries=claims.get("all_beneficiaries") is True,
        issued_at=iat,
        expires_at=exp,
        jti=_str_claim(claims, "jti"),
    )


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"access token has no valid {name}")
    return int(value)


def _str_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise TokenError(f"access token has no {name}")
    return value
