"""Token issuance (SMART Backend Services) and bearer-token authentication."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import registry
from app.auth.assertion import (
    LEEWAY,
    JwksCache,
    unverified_client_id,
    unverified_kid,
    verify_client_assertion,
)
from app.auth.errors import OAuthError, TokenError
from app.auth.keys import SigningKey, load_or_create_signing_key, public_jwks
from app.auth.policy import Caller, ClientPolicy
from app.auth.scopes import grant
from app.auth.secrets import check_secret
from app.auth.tables import auth_failure, auth_jti
from app.auth.tokens import MAX_LIFETIME, AccessClaims, issue_access_token, verify_access_token
from app.db.engine import WriteGate
from app.fhir.outcomes import FhirError
from app.settings import Settings

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REALM = "relais"


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    client_id: str
    organization: str

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def unauthorized(description: str, *, error: str | None = "invalid_token") -> FhirError:
    """401 with the RFC 6750 challenge; no error code when no credentials were sent."""
    challenge = f'Bearer realm="{REALM}"'
    if error is not None:
        challenge += f', error="{error}", error_description="{description}"'
    return FhirError(401, "login", description, headers={"WWW-Authenticate": challenge})


# Verified access tokens kept in memory (a token is at most a few hundred bytes).
VERIFIED_CACHE_SIZE = 10_000


class AuthService:
    # Failed token requests per client id: FAIL_LIMIT within FAIL_WINDOW locks the
    # client id for LOCK_SECONDS (429 with Retry-After), correct credentials or not.
    FAIL_LIMIT = 10
    FAIL_WINDOW = 60.0
    LOCK_SECONDS = 60.0
    # A revocation reaches live tokens within this many seconds (0: checked every time).
    ACTIVE_TTL = 1.0
    # Verified client secrets are remembered (as a digest) to skip scrypt on repeat.
    SECRET_TTL = 300.0

    def __init__(self, settings: Settings, engine: AsyncEngine, gate: WriteGate) -> None:
        self.settings = settings
        self.engine = engine
        # Single statements need no transaction: no BEGIN/COMMIT round trips.
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.gate = gate
        base = settings.base_url.rstrip("/")
        self.issuer = base
        self.token_url = f"{base}/auth/token"
        self.audience = settings.fhir_base
        self.jwks_cache = JwksCache()
        self._verified: dict[str, AccessClaims] = {}
        self._key: SigningKey | None = None
        self._active: dict[str, tuple[float, bool]] = {}
        self._secrets: dict[tuple[str, str], float] = {}

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = load_or_create_signing_key(self.settings.signing_key_path())
        return self._key

    def jwks(self) -> dict[str, Any]:
        return public_jwks(self.key)

    async def aclose(self) -> None:
        await self.jwks_cache.aclose()

    # --- bearer tokens -----------------------------------------------------------------

    def verify(self, token: str) -> AccessClaims:
        """Signature checks cost more than the rest of a read: remember verified tokens
        until they expire (revocation is still checked on every request)."""
        now = time.time()
        claims = self._verified.get(token)
        if claims is not None and claims.expires_at > now:
            return claims
        claims = verify_access_token(
            token, self.key, issuer=self.issuer, audience=self.audience, now=now
        )
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    async def authenticate(self, authorization: str | None) -> ClientPolicy:
        """The caller's policy from an `Authorization: Bearer` header, else 401."""
        if not authorization:
            raise unauthorized(
                "This request needs an access token: Authorization: Bearer <token> "
                f"(get one from {self.token_url})",
                error=None,
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("The Authorization header must be 'Bearer <token>'", error=None)
        try:
            claims = self.verify(token.strip())
        except TokenError as exc:
            raise unauthorized(exc.description) from None
        if not await self.client_active(claims.client_id):
            raise unauthorized("The client of this access token has been revoked")
        caller = Caller(
            client_id=claims.client_id,
            organization=claims.organization,
            scope=claims.scope,
            all_beneficiaries=claims.all_beneficiaries,
        )
        return ClientPolicy(caller)

    async def policy_for_client(self, client_id: str) -> ClientPolicy | None:
        """The policy of a registered, active client with all its registered scopes, for
        work done on its behalf outside an HTTP request (MLLP, subscription delivery)."""
        async with self.autocommit.connect() as conn:
            client = await registry.find_client(conn, client_id)
        if client is None or not client.active:
            return None
        caller = Caller(
            client_id=client.client_id,
            organization=client.organization,
            scope=client.scope,
            all_beneficiaries=client.all_beneficiaries,
        )
        return ClientPolicy(caller)

    async def client_active(self, client_id: str) -> bool:
        now = time.monotonic()
        cached = self._active.get(client_id)
        if cached is not None and now - cached[0] < self.ACTIVE_TTL:
            return cached[1]
        async with self.autocommit.connect() as conn:
            active = await registry.is_active(conn, client_id)
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[client_id] = (now, active)
        return active

    # --- the token endpoint -------------------------------------------------------------

    async def issue(self, form: dict[str, str], authorization: str | None) -> IssuedToken:
        """client_credentials with private_key_jwt or client_secret_basic.

        Raises OAuthError (invalid_client for every authentication failure) or Throttled.
        """
        basic = _basic_credentials(authorization)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        assertion = form.get("client_assertion")
        if basic is not None:
            client_id = basic[0]
        elif assertion:
            if form.get("client_assertion_type") != JWT_BEARER:
                raise OAuthError("invalid_client", f"client_assertion_type must be {JWT_BEARER}")
            client_id = unverified_client_id(assertion)
        else:
            raise OAuthError(
                "invalid_client",
                "no client authentication: use a client_assertion (private_key_jwt) "
                "or HTTP Basic (client_secret_basic)",
            )
        status = 401 if basic is not None else 400
        if form.get("client_id") not in (None, client_id):
            raise OAuthError(
                "invalid_client", "client_id does not match the credentials", status=status
            )
        async with self.autocommit.connect() as conn:
            client = await registry.find_client(conn, client_id)
        if client is None or not client.active:
            raise OAuthError("invalid_client", "unknown or revoked client", status=status)
        now = datetime.now(UTC)
        if client.locked_until is not None and client.locked_until > now:
            raise Throttled(math.ceil((client.locked_until - now).total_seconds()))
        try:
            if basic is not None:
                await self._check_secret(client, basic[1])
            else:
                assert assertion is not None
                await self._check_assertion(client, assertion)
        except OAuthError as exc:
            exc.status = status
            await self._failed(client_id, client, now)
            raise
        if client.failures:
            async with self.gate, self.autocommit.connect() as conn:
                await conn.execute(
                    delete(auth_failure).where(auth_failure.c.client_id == client_id)
                )
        try:
            scope = grant(form.get("scope", ""), client.scope)
        except ValueError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        token, expires_in = issue_access_token(
            self.key,
            issuer=self.issuer,
            audience=self.audience,
            client_id=client_id,
            organization=client.organization,
            scope=scope,
            all_beneficiaries=client.all_beneficiaries,
            lifetime=MAX_LIFETIME,
            now=time.time(),
        )
        return IssuedToken(token, expires_in, scope, client_id, client.organization)

    async def _check_secret(self, client: Any, secret: str) -> None:
        if not client.secret_hash:
            raise OAuthError("invalid_client", "this client authenticates with private_key_jwt")
        digest = hashlib.sha256(f"{client.secret_hash}\0{secret}".encode()).hexdigest()
        key = (client.client_id, digest)
        seen = self._secrets.get(key)
        if seen is not None and time.monotonic() - seen < self.SECRET_TTL:
            return
        if not await asyncio.to_thread(check_secret, secret, client.secret_hash):
            raise OAuthError("invalid_client", "wrong client secret")
        if len(self._secrets) > 10_000:
            self._secrets.clear()
        self._secrets[key] = time.monotonic()

    async def _check_assertion(self, client: Any, assertion: str) -> None:
        if client.secret_hash:
            raise OAuthError("invalid_client", "this client authenticates with client_secret_basic")
        if client.jwks_url:
            jwks = await self.jwks_cache.get(client.jwks_url, kid=unverified_kid(assertion))
        else:
            jwks = _inline_jwks(client.jwks)
        claims = verify_client_assertion(
            assertion,
            client_id_hint=client.client_id,
            jwks=jwks,
            token_url=self.token_url,
            now=time.time(),
        )
        expires = datetime.fromtimestamp(claims.exp + LEEWAY, UTC)
        try:
            async with self.gate, self.autocommit.connect() as conn:
                await conn.execute(
                    insert(auth_jti).values(
                        client_id=client.client_id, jti=claims.jti, expires_at=expires
                    )
                )
        except IntegrityError:
            raise OAuthError(
                "invalid_client", "client_assertion jti has already been used"
            ) from None

    async def _failed(self, client_id: str, client: Any, now: datetime) -> None:
        """Count a failure in the client's window; lock the client id past the limit."""
        window_open = (
            client.window_start is not None
            and (now - client.window_start).total_seconds() < self.FAIL_WINDOW
        )
        failures = (client.failures or 0) + 1 if window_open else 1
        locked = now + timedelta(seconds=self.LOCK_SECONDS) if failures >= self.FAIL_LIMIT else None
        values = {
            "window_start": client.window_start if window_open else now,
            "failures": failures,
            "locked_until": locked,
        }
        async with self.gate, self.engine.begin() as conn:
            if client.window_start is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(auth_failure).values(client_id=client_id, **values)
                        )
                    return
                except IntegrityError:
                    pass
            await conn.execute(
                update(auth_failure).where(auth_failure.c.client_id == client_id).values(values)
            )

    async def purge_expired(self) -> None:
        """Forget assertion ids past their expiry (replays of those fail on exp anyway)."""
        async with self.gate, self.engine.begin() as conn:
            await conn.execute(delete(auth_jti).where(auth_jti.c.expires_at < datetime.now(UTC)))

    # --- introspection -------------------------------------------------------------------

    async def introspect(self, token: str) -> dict[str, Any]:
        try:
            claims = self.verify(token)
        except TokenError:
            return {"active": False}
        if not await self.client_active(claims.client_id):
            return {"active": False}
        return {
            "active": True,
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.client_id,
            "token_type": "Bearer",
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": claims.jti,
            "organization": claims.organization,
            "all_beneficiaries": claims.all_beneficiaries,
        }


@lru_cache(maxsize=1024)
def _inline_jwks(text: str) -> dict[str, Any]:
    jwks: dict[str, Any] = json.loads(text)
    return jwks


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "the token endpoint accepts HTTP Basic only", status=401)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", status=401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", status=401)
    # RFC 6749 §2.3.1: both are form-urlencoded before being joined.
    return unquote_plus(client_id), unquote_plus(secret)
