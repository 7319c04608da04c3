"""The pure parts: limits, credentials, API keys, JWTs, redaction."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from sidecar.ledger import db
from sidecar.security import apikeys, credentials
from sidecar.security.apikeys import ApiKeyStore, KeyCache, KeyVerdict
from sidecar.security.auth import Authenticator, Method, Principal
from sidecar.security.jwt import JwtSettings, JwtVerifier
from sidecar.security.limits import (
    ConnectionLimits,
    DailyBudget,
    IdleTimer,
    MessageRate,
    Refusal,
    TokenBucket,
    Verdict,
)
from sidecar.security.output import cap_output
from sidecar.security.redact import MASK, RedactingFilter, Redactor
from tests.security.helpers import AUDIENCE, ISSUER, SECRET, RsaKeys, hs_token

# Limits ------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate_and_caps_at_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # one token per 0.5 s
    assert bucket.take(100.0) and bucket.take(100.0) and bucket.take(100.0)
    assert not bucket.take(100.0)  # never more than the burst
    assert not bucket.take(50.0)  # a clock stepping back refills nothing
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)


def test_message_rate_drops_then_closes() -> None:
    rate = MessageRate(per_second=2, now=0.0)
    verdicts = [rate.check(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 2 + [Verdict.DROP] * 2 + [Verdict.CLOSE] * 2
    rate = MessageRate(per_second=2, now=0.0)
    assert [rate.check(0.0) for _ in range(3)][-1] is Verdict.DROP
    assert rate.check(1.0) is Verdict.ALLOW and rate.dropped == 0  # forgiven once it complies


def test_connection_limits() -> None:
    limits = ConnectionLimits(total_max=3, per_tenant=2)
    assert limits.acquire("a") is None and limits.acquire("a") is None
    assert limits.acquire("a") == Refusal(
        429, "too_many_tenant_connections", "your tenant is at its connection limit"
    )
    assert limits.acquire("b") is None
    refused = limits.acquire("c")
    assert refused is not None and refused.status == 503
    limits.release("a")
    assert limits.acquire("c") is None
    for tenant in ("a", "b", "c", "zzz"):
        limits.release(tenant)
    assert limits.total == 0 and limits.by_tenant == {}
    unlimited = ConnectionLimits(0, 0)
    assert all(unlimited.acquire("x") is None for _ in range(1000))


def test_daily_budget_rolls_over_at_utc_midnight() -> None:
    day = 86400.0 * 20000
    budget = DailyBudget(100)
    assert budget.allows("t", day)
    budget.charge("t", 60, day + 10)
    assert budget.remaining("t", day + 10) == 40 and budget.allows("t", day + 10)
    budget.charge("t", 40, day + 20)
    assert not budget.allows("t", day + 20) and budget.allows("u", day + 20)
    assert budget.allows("t", day + 86400)  # a new UTC day
    budget.seed({"t": 100}, day + 86400)
    assert not budget.allows("t", day + 86401)
    free = DailyBudget(0)
    free.charge("t", 10**9, day)
    assert free.allows("t", day) and free.remaining("t", day) is None


def test_cap_output() -> None:
    body = {"messages": []}
    assert cap_output(body, 0) == (body, None)
    assert cap_output(body, 100) == ({"messages": [], "max_tokens": 100}, 100)
    assert cap_output({"max_tokens": 100}, 100) == ({"max_tokens": 100}, 100)
    over = cap_output({"max_completion_tokens": 101}, 100)
    assert isinstance(over, Refusal) and over.code == "max_tokens_exceeded"
    for bad in (0, -1, True, "5", 1.5):
        refused = cap_output({"max_tokens": bad}, 100)
        assert isinstance(refused, Refusal) and refused.code == "invalid_max_tokens"


def test_idle_timer() -> None:
    idle = IdleTimer(10, now=0.0)
    assert not idle.expired(9.9, busy=False) and idle.expired(10.0, busy=False)
    idle.touch(10.0)
    assert not idle.expired(15.0, busy=True)  # a running stream is not idle
    assert not idle.expired(24.0, busy=False) and idle.expired(25.0, busy=False)
    assert not IdleTimer(0, 0.0).expired(1e9, busy=False)


# Credentials -------------------------------------------------------------------------------


def scope(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "websocket", "headers": [], "query_string": b""}
    base.update(kw)
    return base


def test_credential_sources_in_order() -> None:
    header = scope(headers=[(b"authorization", b"Bearer abc")], query_string=b"token=q")
    assert credentials.extract(header) == credentials.Credential("abc", "header")
    sub = scope(subprotocols=["sidecar.v1", "bearer.xyz"])
    assert credentials.extract(sub) == credentials.Credential("xyz", "subprotocol")
    query = scope(query_string=b"a=1&api_key=k1")
    assert credentials.extract(query) == credentials.Credential("k1", "query")
    assert credentials.extract(scope(headers=[(b"authorization", b"Basic Zm9v")])) is None
    assert credentials.extract(scope(subprotocols=["bearer."])) is None
    assert "abc" not in repr(credentials.extract(header))


def test_scrubbed_scope_keeps_no_credential_and_pins_the_tenant() -> None:
    raw = scope(
        headers=[
            (b"authorization", b"Bearer abc"),
            (b"x-sidecar-tenant", b"mallory"),
            (b"sec-websocket-protocol", b"sidecar.v1, bearer.xyz"),
            (b"traceparent", b"00-1-2-01"),
        ],
        subprotocols=["sidecar.v1", "bearer.xyz"],
        query_string=b"token=abc&tenant=mallory&resume_token=r",
    )
    clean = credentials.scrubbed(raw, "acme")
    text = repr(clean)
    assert "abc" not in text and "xyz" not in text and "mallory" not in text
    assert (b"x-sidecar-tenant", b"acme") in clean["headers"]  # type: ignore[operator]
    assert (b"traceparent", b"00-1-2-01") in clean["headers"]  # type: ignore[operator]
    assert clean["subprotocols"] == ["sidecar.v1"]
    assert clean["query_string"] == b"resume_token=r"
    assert credentials.chosen_subprotocol(raw) == "sidecar.v1"
    assert credentials.chosen_subprotocol(scope(subprotocols=["bearer.x"])) is None
    # Auth off: the client's tenant stays.
    assert b"mallory" in credentials.scrubbed(raw, None)["query_string"]  # type: ignore[operator]


# API keys ----------------------------------------------------------------------------------


def test_api_key_store_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    db.upgrade(url)
    store = ApiKeyStore(db.make_engine(url))
    info, key = store.create("acme", "web")
    assert key.startswith("sk_sc_" + info.id + "_") and len(key) == 6 + 16 + 1 + 43
    assert apikeys.key_id_of(key) == info.id
    with pytest.raises(ValueError):
        store.create("no spaces please")
    cache = KeyCache(store.snapshot())
    assert cache.verify(key) == (KeyVerdict.OK, "acme")
    assert cache.usable_ids() == {info.id}
    assert cache.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))[0] == KeyVerdict.UNKNOWN
    assert cache.verify("sk_sc_nonsense")[0] == KeyVerdict.UNKNOWN
    assert store.revoke(info.id) and not store.revoke(info.id)
    cache.replace(store.snapshot())
    assert cache.verify(key) == (KeyVerdict.REVOKED, None)
    assert cache.usable_ids() == set()  # what a refresh compares to find connections to close
    listed = store.all()
    assert [(k.id, k.tenant, k.revoked_at is not None) for k in listed] == [(info.id, "acme", True)]
    assert store.all(include_revoked=False) == []
    # Only the digest is stored.
    assert key not in (tmp_path / "k.db").read_bytes().decode("latin-1")


# JWT ---------------------------------------------------------------------------------------


def verifier(tmp_path: Path, rsa: RsaKeys, **kw: object) -> JwtVerifier:
    settings = JwtSettings(
        secret=SECRET, jwks_file=rsa.jwks(tmp_path / "jwks.json"), issuer=ISSUER, audience=AUDIENCE
    )
    for key, value in kw.items():
        object.__setattr__(settings, key, value)
    return JwtVerifier(settings)


def test_jwt_verification(tmp_path: Path) -> None:
    rsa = RsaKeys()
    v = verifier(tmp_path, rsa)
    assert v.verify(rsa.token()).tenant == "jwt-tenant"
    assert v.verify(hs_token(tenant=42)).tenant == "42"
    cases = {
        "expired_token": rsa.token(exp=int(time.time()) - 60),
        "token_not_yet_valid": rsa.token(nbf=int(time.time()) + 600),
        "invalid_audience": rsa.token(aud="x"),
        "invalid_issuer": rsa.token(iss="x"),
        "invalid_signature": RsaKeys().token(),
        "unknown_key": RsaKeys("other").token(),
        "missing_claim": rsa.token(exp=None),
        "no_tenant": rsa.token(tenant="has space"),
        "malformed_token": "a.b.c",
    }
    for reason, token in cases.items():
        assert v.verify(token).reason == reason, reason
    import jwt as pyjwt

    none_alg = pyjwt.encode({"tenant": "x", "exp": time.time() + 60}, None, algorithm="none")
    assert v.verify(none_alg).reason == "unsupported_algorithm"
    # With only RSA keys configured, an HS256 token is refused whatever its secret: the public
    # key can never be used as an HMAC secret (algorithm confusion).
    rsa_only = verifier(tmp_path, rsa, secret=None)
    assert rsa_only.verify(hs_token()).reason == "unsupported_algorithm"
    nested = verifier(tmp_path, rsa, tenant_claim="org.id")
    assert nested.verify(rsa.token(org={"id": "deep"})).tenant == "deep"


def test_jwt_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings())
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(secret="short"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": []}')
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(jwks_file=bad))
    bad.write_text("not json")
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(jwks_file=bad))


def test_authenticator_dispatches_by_shape(tmp_path: Path) -> None:
    rsa = RsaKeys()
    key_id, key = apikeys.generate()
    cache = KeyCache([(key_id, "acme", apikeys.digest(key), False)])
    auth = Authenticator(cache, verifier(tmp_path, rsa))
    assert auth.authenticate(credentials.Credential(key, "header")) == Principal(
        "acme", Method.APIKEY, key_id
    )
    exp = int(time.time()) + 300
    principal = auth.authenticate(credentials.Credential(rsa.token(exp=exp), "query"))
    assert principal == Principal("jwt-tenant", Method.JWT, expires_at=exp + 30.0)
    refused = auth.authenticate(None)
    assert not isinstance(refused, Principal) and refused.status == 401
    only_keys = Authenticator(cache)
    refused = only_keys.authenticate(credentials.Credential(rsa.token(), "header"))
    assert not isinstance(refused, Principal) and refused.reason == "invalid_api_key"


# Redaction ---------------------------------------------------------------------------------


def test_redactor_masks_known_secrets_and_credential_shapes() -> None:
    redact = Redactor(["upstream-secret-123", None, ""])
    _, key = apikeys.generate()
    text = (
        f"upstream-secret-123 Authorization: Bearer abc.def {key} "
        f"{hs_token()} http://u:pw@host/x ?token=t0k&x=1 bearer.zzz"
    )
    out = redact(text)
    for secret in ("upstream-secret-123", "abc.def", key, hs_token()[:20], "pw@", "t0k", "zzz"):
        assert secret not in out, secret
    assert out.count(MASK) >= 7 and "x=1" in out and "u:" in out


def test_logging_filter(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("sidecar.test.redact")
    filt = RedactingFilter(Redactor(["hunter2-secret"]))
    caplog.handler.addFilter(filt)
    try:
        logger.warning("key %s", "hunter2-secret")
        try:
            raise RuntimeError("boom hunter2-secret")
        except RuntimeError:
            logger.exception("failed")
    finally:
        caplog.handler.removeFilter(filt)
    assert "hunter2" not in caplog.text and MASK in caplog.text


# Edge hooks --------------------------------------------------------------------------------


def test_edge_admit_charge_and_idle() -> None:
    from prometheus_client import CollectorRegistry

    from sidecar.security.edge import Edge, EdgeSettings

    registry = CollectorRegistry()
    edge = Edge(
        EdgeSettings(max_tokens_limit=100, tenant_daily_token_budget=50, idle_timeout=5),
        None,
        registry,
    )
    now = 86400.0 * 20000
    assert edge.admit({"messages": []}, "t", now) == {"messages": [], "max_tokens": 100}
    refused = edge.admit({"max_tokens": 101}, "t", now)
    assert isinstance(refused, Refusal) and refused.code == "max_tokens_exceeded"
    edge.charge("t", 20, 30, now)
    refused = edge.admit({"max_tokens": 1}, "t", now)
    assert isinstance(refused, Refusal) and refused.code == "budget_exhausted"
    assert edge.admit({"max_tokens": 1}, "u", now) == {"max_tokens": 1}
    value = registry.get_sample_value
    assert value("sidecar_limit_hits_total", {"limit": "max_tokens"}) == 1
    assert value("sidecar_limit_hits_total", {"limit": "daily_budget"}) == 1
    timer = edge.idle_timer(0.0)
    assert timer is not None and timer.expired(5.0, busy=False)
    assert Edge(EdgeSettings(), None, CollectorRegistry()).idle_timer(0.0) is None
    assert not Edge(EdgeSettings(), None, CollectorRegistry()).auth_enabled


def test_a_tokens_expiry_travels_with_it_leeway_included(tmp_path: Path) -> None:
    rsa = RsaKeys()
    exp = int(time.time()) + 120
    assert verifier(tmp_path, rsa).verify(rsa.token(exp=exp)).expires_at == exp + 30.0
    strict = verifier(tmp_path, rsa, leeway=0.0)
    assert strict.verify(hs_token(exp=exp)).expires_at == float(exp)
    # Within the leeway an expired token still passes, and its expiry says until when.
    late = verifier(tmp_path, rsa).verify(rsa.token(exp=int(time.time()) - 10))
    assert late.reason == "ok" and late.expires_at is not None and late.expires_at > time.time()


def test_edge_without_a_cap_or_budget_admits_the_body_as_it_came() -> None:
    """No `--max-tokens-limit`, no daily budget: nothing to bound or reserve, so the body (even
    one whose `max_tokens` the upstream will refuse) goes on untouched, and nothing is held."""
    from prometheus_client import CollectorRegistry

    from sidecar.security.edge import Edge, EdgeSettings

    edge = Edge(EdgeSettings(), None, CollectorRegistry())
    for body in ({"messages": [{"role": "user", "content": "hi"}]}, {"max_tokens": "lots"}):
        assert edge.admit(body, "t", 0.0, stream="s1") is body
    assert edge.budget.holds == {} and edge.budget.reserved == {}
    edge.charge("t", 5, 7, 0.0, stream="s1")  # settling a stream that holds nothing is fine
