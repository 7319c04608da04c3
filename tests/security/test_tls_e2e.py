"""`wss://` and `https://` with a certificate made in the test; auth on top of TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sidecar.ledger import db
from sidecar.security.apikeys import ApiKeyStore
from tests.e2e.wsclient import Client, chat
from tests.security.helpers import refused
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sidecar test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_wss_with_a_generated_certificate(tmp_path: Path) -> None:
    cert, key_file = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    with running_stack(tmp_path) as stack:
        key = ApiKeyStore(db.make_engine(stack.db_url)).create("secure")[1]
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "400")
        serve = stack.start_serve(
            "--tls-cert", str(cert), "--tls-key", str(key_file), "--auth", "apikey"
        )
        url = f"wss://127.0.0.1:{stack.port}/v1/stream"
        headers = {"Authorization": f"Bearer {key}"}

        async def run() -> list[dict[str, object]]:
            client = await Client.connect(url, ssl=trust, additional_headers=headers)
            await client.generate("tls", chat(4))
            frames = await client.read_until_end("tls")
            await client.close()
            status, body, _ = await refused(url, ssl=trust)  # auth still applies over TLS
            assert (status, body["error"]["code"]) == (401, "missing_credential")
            return frames

        frames = asyncio.run(run())
        assert frames[-1]["type"] == "done"
        assert [f["seq"] for f in frames if f["type"] == "delta"] == [1, 2, 3, 4]
        # Plain ws:// to the TLS port gets nowhere; an untrusting client refuses the server.
        with pytest.raises(Exception):  # noqa: B017 - any handshake failure
            asyncio.run(Client.connect(f"ws://127.0.0.1:{stack.port}/v1/stream"))
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(Client.connect(url, ssl=ssl.create_default_context()))
        request = urllib.request.Request(
            f"https://127.0.0.1:{stack.port}/v1/chat/completions",
            json.dumps(chat(2)).encode(),
            {"content-type": "application/json", **headers},
        )
        with urllib.request.urlopen(request, context=trust, timeout=scaled(5)) as response:
            assert json.load(response)["usage"]["completion_tokens"] == 2
        assert "wss://" in serve.output()
