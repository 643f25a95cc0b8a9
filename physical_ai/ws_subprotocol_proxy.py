"""A WebSocket front door that accepts an older subprotocol name for the same protocol.

The Foxglove SDK's server (foxglove-sdk 0.30) only completes handshakes that offer `foxglove.sdk.v1`; clients
built on the official `@foxglove/ws-protocol` library (and older Foxglove / Lichtblick releases) offer
`foxglove.websocket.v1` and get HTTP 400. The two are the same protocol under two names (Foxglove's stated
position), so this proxy listens on the public port, rewrites an aliased name in the client's handshake to the
server's, rewrites the server's answer back to the name the client asked for, and from then on copies bytes both
ways. Requests without an aliased name pass unchanged. ROS-free; runs its asyncio loop on a thread of its own.

It is also the door of the live view, checked before anything reaches the server: a browser's `Origin` must match
`allowed_origins` (fnmatch patterns; a request without one, from a native client, passes), the `token` (when set)
must come as `?token=` in the URL or as `Authorization: Bearer`, and at most `max_connections` are open at once.
Without the Origin check any web page open in a local browser could read the camera and LiDAR streams.
Refusals get HTTP 403 (503 for the cap) and are counted per reason in `refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import threading
import urllib.parse
from collections.abc import Mapping, Sequence

MAX_HEADER_BYTES = 16384
HEADER = b"sec-websocket-protocol"
# Local tools only: native clients send no Origin; a page served from this machine does.
LOCAL_ORIGINS = ("http://localhost", "http://localhost:*", "http://127.0.0.1", "http://127.0.0.1:*",
                 "http://[[]::1]", "http://[[]::1]:*")


class SubprotocolProxy:
    """Listens on (host, port) and forwards every connection to 127.0.0.1:upstream_port."""

    def __init__(self, host: str, port: int, upstream_port: int,
                 aliases: Mapping[str, str] | None = None, handshake_timeout_s: float = 10.0,
                 allowed_origins: Sequence[str] = LOCAL_ORIGINS, token: str = "", max_connections: int = 16) -> None:
        """Configure the proxy (start() opens the port).

        Args:
            host: address to listen on.
            port: port to listen on (0: any free port; see `.port` after start()).
            upstream_port: the real server's port on 127.0.0.1.
            aliases: client subprotocol name -> the server's name for it.
            handshake_timeout_s: a client that sends no complete handshake within this is dropped [s].
            allowed_origins: fnmatch patterns of browser Origins let in (e.g. "https://app.foxglove.dev").
            token: when not empty, the secret a client must present (URL `?token=` or `Authorization: Bearer`).
            max_connections: connections open at once; more are refused.
        """
        self.host, self.requested_port, self.upstream_port = host, port, upstream_port
        self.aliases = dict(aliases or {"foxglove.websocket.v1": "foxglove.sdk.v1"})
        self.handshake_timeout_s = handshake_timeout_s
        self.port = 0
        self.connections = 0        # accepted so far
        self.rewritten = 0          # handshakes that used an alias
        self.refused: dict[str, int] = {}  # reason -> handshakes refused
        self.allowed_origins = tuple(allowed_origins)
        self.token = token
        self.max_connections = max_connections
        self._open = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="ws-subprotocol-proxy", daemon=True)

    def start(self) -> SubprotocolProxy:
        """Open the port (raises OSError when it is taken) and serve on a background thread."""
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.requested_port))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._thread.start()
        return self

    @property
    def open_connections(self) -> int:
        """Connections let through and still open."""
        return self._open

    def stop(self) -> None:
        """Close the port and every open connection."""
        if self._server is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        self._server = None

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream_writer: asyncio.StreamWriter | None = None
        counted = False
        try:
            request = await asyncio.wait_for(client_reader.readuntil(b"\r\n\r\n"), self.handshake_timeout_s)
            if len(request) > MAX_HEADER_BYTES:
                return
            refusal = self._refusal(request)
            if refusal is not None:
                self.refused[refusal] = self.refused.get(refusal, 0) + 1
                status = b"503 Service Unavailable" if refusal == "too_many_connections" else b"403 Forbidden"
                client_writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await client_writer.drain()
                return
            self._open += 1
            counted = True
            request, alias = self._rewrite_request(request)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            upstream_writer.write(request)
            response = await asyncio.wait_for(upstream_reader.readuntil(b"\r\n\r\n"), self.handshake_timeout_s)
            if alias is not None:
                response = _replace_protocol(response, self.aliases[alias], alias)
            client_writer.write(response)
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, OSError):
            pass  # a client or the server went away mid-handshake: nothing to forward
        finally:
            if counted:
                self._open -= 1
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()

    def _refusal(self, request: bytes) -> str | None:
        """Why a handshake is refused (a counter key), or None to let it through."""
        if self._open >= self.max_connections:
            return "too_many_connections"
        origin = _header(request, b"origin")
        if origin is not None and not any(fnmatch.fnmatchcase(origin, p) for p in self.allowed_origins):
            return "origin"
        if self.token:
            target = request.split(b"\r\n", 1)[0].split(b" ")
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target[1].decode("latin-1")).query) \
                if len(target) == 3 else {}
            bearer = (_header(request, b"authorization") or "").removeprefix("Bearer ").strip()
            offered = [*query.get("token", []), bearer]
            if not any(hmac.compare_digest(t.encode(), self.token.encode()) for t in offered if t):
                return "token"
        return None

    def _rewrite_request(self, request: bytes) -> tuple[bytes, str | None]:
        """Swap an aliased subprotocol for the server's name, unless the client also offers that one."""
        offered = _protocols(request)
        for alias, real in self.aliases.items():
            if alias in offered and real not in offered:
                self.rewritten += 1
                return _replace_protocol(request, alias, real), alias
        return request, None


def _protocols(header: bytes) -> list[str]:
    names: list[str] = []
    for line in header.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == HEADER:
            names += [p.strip().decode("latin-1") for p in value.split(b",") if p.strip()]
    return names


def _header(request: bytes, name: bytes) -> str | None:
    """The value of a header (lower-case name), None when absent."""
    for line in request.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


def _replace_protocol(header: bytes, old: str, new: str) -> bytes:
    lines = header.split(b"\r\n")
    for i, line in enumerate(lines[1:], start=1):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == HEADER:
            names = [new if p.strip().decode("latin-1") == old else p.strip().decode("latin-1")
                     for p in value.split(b",")]
            lines[i] = key + b": " + ", ".join(n for n in names if n).encode("latin-1")
    return b"\r\n".join(lines)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()
