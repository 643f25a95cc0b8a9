"""The subprotocol proxy in front of a server that, like foxglove-sdk's, accepts only `foxglove.sdk.v1`."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import serve

from physical_ai.ws_subprotocol_proxy import SubprotocolProxy


@pytest.fixture
def strict_server():
    """Echo server that negotiates only foxglove.sdk.v1 and refuses other offers with HTTP 400."""
    def refuse(connection, request):
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if "foxglove.sdk.v1" not in [p.strip() for p in offered.split(",")]:
            return connection.respond(400, "Missing expected sec-websocket-protocol header\n")
        return None

    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, subprotocols=["foxglove.sdk.v1"], process_request=refuse) as server:
        import threading

        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()


def test_both_names_are_accepted_and_answered_in_kind(strict_server):
    proxy = SubprotocolProxy("127.0.0.1", 0, strict_server).start()
    try:
        url = f"ws://127.0.0.1:{proxy.port}"
        with pytest.raises(InvalidStatus):  # the server alone refuses the older name
            connect(f"ws://127.0.0.1:{strict_server}", subprotocols=["foxglove.websocket.v1"]).close()
        for name in ("foxglove.websocket.v1", "foxglove.sdk.v1"):
            with connect(url, subprotocols=[name]) as ws:
                assert ws.subprotocol == name
                ws.send(b"\x01binary" * 5000)
                assert ws.recv(timeout=5) == b"\x01binary" * 5000
                ws.send("text")
                assert ws.recv(timeout=5) == "text"
        with connect(url, subprotocols=["foxglove.websocket.v1", "foxglove.sdk.v1"]) as ws:
            assert ws.subprotocol == "foxglove.sdk.v1"  # a client offering both gets the current name
        with pytest.raises(InvalidStatus):  # anything else is still refused by the server
            connect(url, subprotocols=["other.v1"]).close()
        assert proxy.rewritten == 1 and proxy.connections == 4
    finally:
        proxy.stop()


def _refused(url: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=5, **kwargs).close()
    return refused.value.response.status_code


def test_only_local_origins_get_in_by_default(strict_server):
    # issue 22: any web page open in a local browser could read the camera and LiDAR streams.
    proxy = SubprotocolProxy("127.0.0.1", 0, strict_server).start()
    try:
        url = f"ws://127.0.0.1:{proxy.port}"
        for origin in ("https://evil.example", "null", "http://localhost.evil.example", "https://app.foxglove.dev"):
            assert _refused(url, origin=origin) == 403, origin
        for origin in (None, "http://localhost:8080", "http://127.0.0.1"):
            with connect(url, subprotocols=["foxglove.sdk.v1"], origin=origin) as ws:
                ws.send("x")
                assert ws.recv(timeout=5) == "x"
        assert proxy.refused == {"origin": 4}
    finally:
        proxy.stop()
    proxy = SubprotocolProxy("127.0.0.1", 0, strict_server, allowed_origins=["https://app.foxglove.dev"]).start()
    try:
        with connect(f"ws://127.0.0.1:{proxy.port}", subprotocols=["foxglove.sdk.v1"],
                     origin="https://app.foxglove.dev") as ws:
            ws.send("y")
            assert ws.recv(timeout=5) == "y"
    finally:
        proxy.stop()


def test_a_token_is_required_when_set(strict_server):
    proxy = SubprotocolProxy("127.0.0.1", 0, strict_server, token="s3cret").start()
    try:
        url = f"ws://127.0.0.1:{proxy.port}"
        assert _refused(url) == 403
        assert _refused(f"{url}/?token=wrong") == 403
        assert _refused(url, additional_headers={"Authorization": "Bearer s3cre"}) == 403
        for kwargs in ({"uri": f"{url}/?token=s3cret"},
                       {"uri": url, "additional_headers": {"Authorization": "Bearer s3cret"}}):
            with connect(subprotocols=["foxglove.sdk.v1"], **kwargs) as ws:
                ws.send("z")
                assert ws.recv(timeout=5) == "z"
        assert proxy.refused == {"token": 3}
    finally:
        proxy.stop()


def test_connections_are_capped(strict_server):
    # issue 22: 200 connections were accepted.
    proxy = SubprotocolProxy("127.0.0.1", 0, strict_server, max_connections=2).start()
    try:
        url = f"ws://127.0.0.1:{proxy.port}"
        with connect(url, subprotocols=["foxglove.sdk.v1"]) as first, \
                connect(url, subprotocols=["foxglove.sdk.v1"]):
            assert _refused(url) == 503
            first.close()
            deadline = time.monotonic() + 5
            while proxy.open_connections >= 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            with connect(url, subprotocols=["foxglove.sdk.v1"]) as ws:
                ws.send("w")
                assert ws.recv(timeout=5) == "w"
        assert proxy.refused == {"too_many_connections": 1}
    finally:
        proxy.stop()
