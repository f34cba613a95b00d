"""Client secrets for `client_secret_basic`: random, stored only as scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt cost: ~16 MiB and a few tens of ms per check; secrets are random, so
# this guards a leaked table, not weak passwords.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32


def new_secret() -> str:
    """256 random bits, URL-safe (usable as is in HTTP Basic credentials)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=HASH_BYTES
    )


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`, base64url without padding."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_scrypt(secret, salt, N, R, P))}"


def check_secret(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, expected = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, _unb64(expected))
    except ValueError:
        return False
