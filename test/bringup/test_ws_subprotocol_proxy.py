"""The subprotocol proxy in front of a server that, like foxglove-sdk's, accepts only `foxglove.sdk.v1`."""

from __future__ import annotations

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
