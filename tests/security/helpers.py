"""Credentials, refusals and metrics for the security tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.timeouts import scaled

SECRET = "s" * 40  # an HS256 secret of 40 bytes
ISSUER = "https://issuer.test"
AUDIENCE = "sidecar-test"


class RsaKeys:
    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self, path: Path) -> Path:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        path.write_text(json.dumps({"keys": [jwk]}))
        return path

    def token(self, **claims: Any) -> str:
        return jwt.encode(
            _claims(claims), self.private, algorithm="RS256", headers={"kid": self.kid}
        )


def _claims(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "tenant": "jwt-tenant",
    }
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(secret: str = SECRET, **claims: Any) -> str:
    return jwt.encode(_claims(claims), secret, algorithm="HS256")


async def refused(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Open a WebSocket that must be refused: (status, JSON body, headers)."""
    try:
        ws = await connect(url, open_timeout=scaled(5), **kwargs)
    except InvalidStatus as exc:
        response = exc.response
        body = json.loads(response.body or b"{}")
        return response.status_code, body, {k.lower(): v for k, v in response.headers.raw_items()}
    await ws.close()
    raise AssertionError("the upgrade was accepted")


def rows_until(db_url: str, done: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Finished stream rows, polled until `done(rows)` holds."""
    from tests.e2e.ledger import stream_rows

    deadline = time.monotonic() + scaled(timeout)
    while True:
        rows = [r for r in stream_rows(db_url) if r["outcome"] is not None]
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def sample(metrics_text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
