"""The remote-policy client against hostile or misconfigured servers (issue 22), and over TLS.

Found: a 2 M-row reply was accepted (a 6.5 M-step chunk published), a 500 MB frame was buffered whole, a malformed
metadata frame escaped as KeyError with no backoff (996 connections in 25 s), no node parameter set the API key,
and only ws:// was tested.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from policy_testlib import raw_observation
from websockets.sync.server import serve

from physical_ai.policy import msgpack_numpy
from physical_ai.policy.openpi_client import OpenpiClient, PolicyServerError
from physical_ai.policy.policy import make_policy

ROOT = Path(__file__).resolve().parents[2]
AMR = ROOT / "models" / "amr_nav"


class RawServer:
    """An openpi-protocol server whose metadata and replies are whatever the test says; counts connections."""

    def __init__(self, metadata: bytes, reply: bytes | None = None, ssl_context=None) -> None:
        self.connections = 0
        self.headers: list = []

        def handler(ws) -> None:
            self.connections += 1
            self.headers.append(ws.request.headers)
            ws.send(metadata)
            for _ in ws:
                ws.send(reply if reply is not None else metadata)

        self._server = serve(handler, "127.0.0.1", 0, max_size=None, ssl=ssl_context, compression=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


def _metadata() -> bytes:
    return msgpack_numpy.packb({"name": "test"})


def _reply(rows: int, cols: int = 2) -> bytes:
    return msgpack_numpy.packb({"actions": np.zeros((rows, cols), np.float32)})


def test_a_malformed_metadata_frame_is_a_failure_with_backoff_not_a_key_error():
    server = RawServer(msgpack_numpy.packb({b"__ndarray__": True}))  # decodes with a KeyError
    try:
        client = OpenpiClient(f"ws://127.0.0.1:{server.port}", backoff_initial_s=0.1, backoff_max_s=0.4)
        errors = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                client.infer({"x": np.zeros(2)})
            except PolicyServerError as exc:
                errors += 1
                assert "metadata" in str(exc)
            time.sleep(0.005)
        assert errors > 100  # fast failures while backing off...
        assert server.connections <= 8, server.connections  # ...but connections only as the backoff allows
    finally:
        server.close()


@pytest.mark.parametrize(("rows", "why"), [(4_000_000, "connection lost"), (5000, "shape")])
def test_an_oversized_reply_is_refused_and_backs_off(rows, why):
    # 4 M rows: 32 MB, beyond max_message_bytes (refused before it is buffered); 5000 rows: beyond any chunk.
    server = RawServer(_metadata(), _reply(rows))
    try:
        policy = make_policy("openpi", AMR, uri=f"ws://127.0.0.1:{server.port}", backoff_initial_s=0.5)
        obs = _amr_observation(policy)
        with pytest.raises(PolicyServerError, match=why):
            policy.infer(obs)
        assert not policy.client.connected and policy.client.retry_in_s() > 0.3
        with pytest.raises(PolicyServerError, match="reconnecting"):
            policy.infer(obs)
        assert server.connections == 1
    finally:
        server.close()


def _amr_observation(policy) -> dict:
    return raw_observation(policy.config)


def test_the_api_key_parameter_reaches_the_server():
    server = RawServer(_metadata(), _reply(10))
    try:
        policy = make_policy("openpi", AMR, uri=f"ws://127.0.0.1:{server.port}", api_key="k3y")
        assert policy.infer(_amr_observation(policy)).values.shape == (10, 2)
        assert server.headers[0].get("Authorization") == "Api-Key k3y"
    finally:
        server.close()


@pytest.fixture
def tls_files(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    return key, cert


def test_wss_against_a_local_tls_server(tls_files):
    import ssl

    key, cert = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = RawServer(_metadata(), _reply(10), ssl_context=context)
    try:
        uri = f"wss://127.0.0.1:{server.port}"
        policy = make_policy("openpi", AMR, uri=uri, ca_file=str(cert))
        assert policy.infer(_amr_observation(policy)).values.shape == (10, 2)
        # The same server is refused when its certificate does not chain to a trusted one.
        untrusting = make_policy("openpi", AMR, uri=uri)
        with pytest.raises(PolicyServerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            untrusting.infer(_amr_observation(untrusting))
    finally:
        server.close()
    with pytest.raises(ValueError, match="wss://"):
        OpenpiClient("ws://127.0.0.1:1", ca_file=str(cert))
