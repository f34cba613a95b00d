"""SMART Backend Services client assertions (`private_key_jwt`, RFC 7523).

Every failure is `invalid_client` with a description precise enough for a
partner to fix its client. Replay (`jti` reuse) is checked by the caller
against the database, with the `jti` and `exp` returned here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import JWSRegistry

from app.auth.errors import OAuthError
from app.auth.keys import SigningKey, import_public_jwk

# alg -> JWK kty able to verify it
ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}
LEEWAY = 30  # seconds of clock skew tolerated on exp, nbf and iat
MAX_LIFETIME = 300  # SMART: exp no more than five minutes in the future
MAX_JTI_LENGTH = 255
MAX_ASSERTION_LENGTH = 16_000

# Extra header members (typ, jku, x5t...) are harmless: keys come only from the registration.
_REGISTRIES = {alg: JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in ALGORITHMS}


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    jti: str
    exp: float
    kid: str
    alg: str


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


def _b64json(segment: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise _invalid(f"client_assertion {what} is not base64url-encoded JSON") from exc
    if not isinstance(data, dict):
        raise _invalid(f"client_assertion {what} is not a JSON object")
    return data


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, read without checking the signature."""
    if not isinstance(assertion, str) or len(assertion) > MAX_ASSERTION_LENGTH:
        raise _invalid("client_assertion is missing or too long")
    parts = assertion.split(".")
    if len(parts) != 3:
        raise _invalid("client_assertion is not a compact JWS (header.payload.signature)")
    return _b64json(parts[0], "header"), _b64json(parts[1], "payload")


def unverified_client_id(assertion: str) -> str:
    """The client an assertion claims to come from, to look up its keys."""
    _, claims = _unverified(assertion)
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss:
        raise _invalid("client_assertion has no iss (the client_id)")
    if iss != sub:
        raise _invalid("client_assertion iss and sub must both be the client_id")
    return iss


def unverified_kid(assertion: str) -> str | None:
    """The header kid, so a caller can refresh a cached JWKS that lacks it."""
    header, _ = _unverified(assertion)
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


@lru_cache(maxsize=512)
def _imported(entry: str) -> SigningKey:
    """A JWK imported once: building the key object costs more than the verification."""
    return import_public_jwk(json.loads(entry))


def _find_key(jwks: dict[str, Any], kid: str, alg: str) -> SigningKey:
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise _invalid("the client's registered JWKS has no 'keys' array")
    problem = f"no key with kid '{kid}' in the client's JWKS"
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kid", kid) != kid:
            continue
        try:
            key = _imported(json.dumps(entry, sort_keys=True))
        except ValueError as exc:
            if "kid" in entry:
                problem = f"key '{kid}' of the client's JWKS is unusable: {exc}"
            continue
        # A JWK without kid is named by its RFC 7638 thumbprint.
        if "kid" not in entry and key.thumbprint() != kid:
            continue
        if entry.get("use", "sig") != "sig":
            problem = f"key '{kid}' is not a signing key (use={entry.get('use')})"
        elif entry["kty"] != ALGORITHMS[alg]:
            problem = f"key '{kid}' is an {entry['kty']} key: it cannot verify {alg}"
        elif entry.get("alg", alg) != alg:
            problem = f"key '{kid}' is registered for {entry['alg']}, not {alg}"
        else:
            return key
    raise _invalid(problem)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"client_assertion {name} must be a NumericDate (seconds since epoch)")
    return float(value)


def _check_claims(
    claims: dict[str, Any], client_id_hint: str | None, token_url: str, now: float
) -> tuple[str, str, float]:
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise _invalid("client_assertion iss and sub must both be the client_id")
    if client_id_hint is not None and iss != client_id_hint:
        raise _invalid(f"client_assertion iss '{iss}' is not the client_id '{client_id_hint}'")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if token_url not in audiences:
        raise _invalid(f"client_assertion aud must be the token URL {token_url}")
    exp = _number(claims, "exp")
    if exp is None:
        raise _invalid("client_assertion has no exp")
    if now >= exp + LEEWAY:
        raise _invalid(f"client_assertion expired {int(now - exp)} s ago")
    if exp - now > MAX_LIFETIME + LEEWAY:
        raise _invalid(f"client_assertion exp is more than {MAX_LIFETIME} s in the future")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + LEEWAY:
        raise _invalid("client_assertion is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + LEEWAY:
        raise _invalid("client_assertion iat is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _invalid("client_assertion has no jti")
    if len(jti) > MAX_JTI_LENGTH:
        raise _invalid(f"client_assertion jti is longer than {MAX_JTI_LENGTH} characters")
    return iss, jti, exp


def verify_client_assertion(
    assertion: str,
    *,
    client_id_hint: str | None,
    jwks: dict[str, Any],
    token_url: str,
    now: float,
) -> AssertionClaims:
    """Verify a client assertion against the client's registered JWKS.

    `client_id_hint` is the client id the caller already holds (the form's
    `client_id`, or the id `jwks` was looked up under); when given, iss must
    equal it. The header must name its key by `kid`, as SMART requires, even
    when the JWKS holds a single key: guessing would hide a client's mistake
    that breaks as soon as it adds a second key.
    """
    header, _ = _unverified(assertion)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _invalid(f"client_assertion alg '{alg}' is not accepted: use RS384 or ES384")
    if "crit" in header or "b64" in header:
        raise _invalid("client_assertion header must not use crit or b64")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("client_assertion header has no kid naming the signing key")
    key = _find_key(jwks, kid, alg)
    try:
        token = jwt.decode(assertion, key, registry=_REGISTRIES[alg])
    except BadSignatureError:
        raise _invalid(f"client_assertion signature does not verify with key '{kid}'") from None
    except (JoseError, ValueError) as exc:
        raise _invalid(f"client_assertion is not a valid JWT: {exc}") from None
    client_id, jti, exp = _check_claims(token.claims, client_id_hint, token_url, now)
    return AssertionClaims(client_id=client_id, jti=jti, exp=exp, kid=kid, alg=alg)


@dataclass
class _Cached:
    jwks: dict[str, Any]
    fetched_at: float
    expires_at: float


class JwksCache:
    """Partner JWKS fetched from their registered URL, cached per URL.

    Honours `Cache-Control: max-age`, `no-store` and `no-cache` (default 300 s,
    at most 24 h). Redirects are not followed unless the injected client does.
    """

    DEFAULT_TTL = 300.0
    MAX_TTL = 86_400.0
    MIN_REFRESH = 30.0  # an unknown kid refetches at most this often (key rotation)
    MAX_BYTES = 256 * 1024

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 5.0,
    ) -> None:
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._clock = clock
        self._entries: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    def _fresh(self, url: str, kid: str | None) -> dict[str, Any] | None:
        entry = self._entries.get(url)
        now = self._clock()
        if entry is None or now >= entry.expires_at:
            return None
        stale_for_kid = kid is not None and not _has_kid(entry.jwks, kid)
        if stale_for_kid and now - entry.fetched_at >= self.MIN_REFRESH:
            return None
        return entry.jwks

    async def get(self, url: str, *, kid: str | None = None) -> dict[str, Any]:
        """The JWKS at `url`; a cached copy lacking `kid` is refreshed (rate-limited)."""
        jwks = self._fresh(url, kid)
        if jwks is not None:
            return jwks
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:  # one fetch per URL at a time; waiters reuse its result
            jwks = self._fresh(url, kid)
            if jwks is not None:
                return jwks
            jwks, ttl = await self._fetch(url)
            now = self._clock()
            if ttl > 0:
                self._entries[url] = _Cached(jwks, now, now + ttl)
            else:
                self._entries.pop(url, None)
            return jwks

    async def _fetch(self, url: str) -> tuple[dict[str, Any], float]:
        fail = f"could not fetch the client's JWKS from {url}"
        try:
            async with self._client.stream(
                "GET", url, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise _invalid(f"{fail}: HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > self.MAX_BYTES:
                        raise _invalid(f"{fail}: larger than {self.MAX_BYTES} bytes")
                cache_control = response.headers.get("cache-control", "")
        except httpx.HTTPError as exc:
            raise _invalid(f"{fail}: {type(exc).__name__} {exc}".rstrip()) from None
        try:
            jwks = json.loads(body)
        except (ValueError, RecursionError):
            raise _invalid(f"{fail}: the body is not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise _invalid(f"{fail}: the body is not a JWKS (no 'keys' array)")
        return jwks, self._ttl(cache_control)

    def _ttl(self, cache_control: str) -> float:
        ttl = self.DEFAULT_TTL
        for directive in cache_control.lower().split(","):
            name, _, value = directive.strip().partition("=")
            if name in ("no-store", "no-cache"):
                return 0.0
            if name == "max-age":
                try:
                    ttl = float(int(value.strip().strip('"')))
                except ValueError:
                    continue
        return min(max(ttl, 0.0), self.MAX_TTL)


def _has_kid(jwks: dict[str, Any], kid: str) -> bool:
    # Keys without kid may match by thumbprint: treat them as possibly present.
    return any(isinstance(k, dict) and k.get("kid", kid) == kid for k in jwks.get("keys", []))
