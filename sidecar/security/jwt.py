"""JWT bearer tokens (PyJWT): HS256 with a shared secret, RS256 with keys from a JWKS file.

Checked: the signature with the key of the token's own algorithm family (an RS256 public key
is never tried as an HS256 secret; `none` is never accepted), `exp` (required), `nbf`, and the
issuer and audience when configured. The tenant is read from a configurable claim (a dotted path
such as `org.tenant` reaches into nested objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from sidecar.errors import ConfigError
from sidecar.security.apikeys import valid_tenant

MIN_SECRET_BYTES = 32
RSA_ALGORITHMS = ("RS256",)


@dataclass(frozen=True, slots=True)
class JwtSettings:
    secret: str | None = None
    jwks_file: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    tenant_claim: str = "tenant"
    leeway: float = 30.0


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """The outcome of checking one token: a tenant, or the reason it was refused."""

    tenant: str | None
    reason: str  # "ok" or a machine-readable refusal code
    subject: str | None = None
    expires_at: float | None = None  # Unix time after which the gate refuses it (exp + leeway)


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        if settings.secret is None and settings.jwks_file is None:
            raise ConfigError("--auth jwt needs --jwt-secret or --jwt-jwks")
        if settings.secret is not None and len(settings.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"--jwt-secret must be at least {MIN_SECRET_BYTES} bytes")
        self.settings = settings
        self.keys: dict[str | None, jwt.PyJWK] = {}
        if settings.jwks_file is not None:
            self.keys = load_jwks(settings.jwks_file)

    def verify(self, token: str) -> TokenCheck:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return TokenCheck(None, "malformed_token")
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.settings.secret is not None:
            key = self.settings.secret
        elif alg in RSA_ALGORITHMS and self.keys:
            kid = header.get("kid")
            found = self.keys.get(kid if isinstance(kid, str) else None)
            if found is None and kid is None and len(self.keys) == 1:
                found = next(iter(self.keys.values()))
            if found is None:
                return TokenCheck(None, "unknown_key")
            key = found
        else:
            return TokenCheck(None, "unsupported_algorithm")
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway,
                options={
                    "require": ["exp"],
                    "verify_aud": s.audience is not None,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            return TokenCheck(None, "expired_token")
        except jwt.ImmatureSignatureError:
            return TokenCheck(None, "token_not_yet_valid")
        except jwt.InvalidAudienceError:
            return TokenCheck(None, "invalid_audience")
        except jwt.InvalidIssuerError:
            return TokenCheck(None, "invalid_issuer")
        except jwt.InvalidSignatureError:
            return TokenCheck(None, "invalid_signature")
        except jwt.MissingRequiredClaimError:
            return TokenCheck(None, "missing_claim")
        except (jwt.PyJWTError, ValueError, TypeError):
            return TokenCheck(None, "malformed_token")
        tenant = claim(claims, s.tenant_claim)
        if isinstance(tenant, int) and not isinstance(tenant, bool):
            tenant = str(tenant)
        if not isinstance(tenant, str) or not valid_tenant(tenant):
            return TokenCheck(None, "no_tenant")
        sub = claims.get("sub")
        exp = claims.get("exp")
        expires_at = float(exp) + s.leeway if isinstance(exp, int | float) else None
        return TokenCheck(tenant, "ok", sub if isinstance(sub, str) else None, expires_at)


def claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def load_jwks(path: Path) -> dict[str | None, jwt.PyJWK]:
    """RSA signing keys from a JWKS file, by `kid`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--jwt-jwks {path}: cannot read a JSON key set ({exc})") from None
    keys: dict[str | None, jwt.PyJWK] = {}
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'--jwt-jwks {path}: expected {{"keys": [...]}}')
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry, algorithm="RS256")
        except jwt.PyJWTError as exc:
            raise ConfigError(f"--jwt-jwks {path}: bad key {entry.get('kid')!r}: {exc}") from None
        keys[entry.get("kid")] = key
    if not keys:
        raise ConfigError(f"--jwt-jwks {path}: no RSA signing keys")
    return keys
