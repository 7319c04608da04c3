"""From a credential to a tenant: API keys and JWTs behind one `authenticate` call."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sidecar.security.apikeys import PREFIX, KeyCache, KeyVerdict
from sidecar.security.credentials import Credential
from sidecar.security.jwt import JwtVerifier


class Method(enum.StrEnum):
    APIKEY = "apikey"
    JWT = "jwt"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    method: Method
    key_id: str | None = None  # the API key's public id
    expires_at: float | None = None  # a token's expiry (Unix time, leeway included)


@dataclass(frozen=True, slots=True)
class AuthRefusal:
    """401: no or invalid credential; 403: a valid credential that grants nothing here."""

    status: int
    reason: str
    message: str


MESSAGES = {
    "missing_credential": "a credential is required: Authorization: Bearer <token>, "
    "the subprotocol bearer.<token>, or ?token=",
    "invalid_api_key": "the API key is not valid",
    "revoked_api_key": "the API key has been revoked",
    "malformed_token": "the bearer token is malformed",
    "unsupported_algorithm": "the token's signing algorithm is not accepted",
    "unknown_key": "the token is signed with an unknown key",
    "invalid_signature": "the token's signature is not valid",
    "expired_token": "the token has expired",
    "token_not_yet_valid": "the token is not valid yet",
    "invalid_audience": "the token is not meant for this audience",
    "invalid_issuer": "the token is from an untrusted issuer",
    "missing_claim": "the token lacks a required claim",
    "no_tenant": "the token names no valid tenant",
}


def refusal(reason: str) -> AuthRefusal:
    return AuthRefusal(403 if reason == "no_tenant" else 401, reason, MESSAGES[reason])


class Authenticator:
    def __init__(self, keys: KeyCache | None = None, jwt: JwtVerifier | None = None) -> None:
        if keys is None and jwt is None:
            raise ValueError("an authenticator needs API keys, JWTs or both")
        self.keys, self.jwt = keys, jwt

    def authenticate(self, credential: Credential | None) -> Principal | AuthRefusal:
        if credential is None:
            return refusal("missing_credential")
        token = credential.token
        if self.keys is not None and (token.startswith(PREFIX) or self.jwt is None):
            verdict, tenant = self.keys.verify(token)
            if verdict == KeyVerdict.OK and tenant is not None:
                return Principal(tenant, Method.APIKEY, token[len(PREFIX) :].split("_", 1)[0])
            return refusal(verdict)
        assert self.jwt is not None
        check = self.jwt.verify(token)
        if check.tenant is None:
            return refusal(check.reason)
        return Principal(check.tenant, Method.JWT, expires_at=check.expires_at)
