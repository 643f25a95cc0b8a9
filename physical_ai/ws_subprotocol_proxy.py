"""A WebSocket front door that accepts an older subprotocol name for the same protocol.

The Foxglove SDK's server (foxglove-sdk 0.30) only completes handshakes that offer `foxglove.sdk.v1`; clients
built on the official `@foxglove/ws-protocol` library (and older Foxglove / Lichtblick releases) offer
`foxglove.websocket.v1` and get HTTP 400. The two are the same protocol under two names (Foxglove's stated
position), so this proxy listens on the public port, rewrites an aliased name in the client's handshake to the
server's, rewrites the server's answer back to the name the client asked for, and from then on copies bytes both
ways. Requests without an aliased name pass unchanged. ROS-free; runs its asyncio loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping

MAX_HEADER_BYTES = 16384
HEADER = b"sec-websocket-protocol"


class SubprotocolProxy:
    """Listens on (host, port) and forwards every connection to 127.0.0.1:upstream_port."""

    def __init__(self, host: str, port: int, upstream_port: int,
                 aliases: Mapping[str, str] | None = None, handshake_timeout_s: float = 10.0) -> None:
        """Configure the proxy (start() opens the port).

        Args:
            host: address to listen on.
            port: port to listen on (0: any free port; see `.port` after start()).
            upstream_port: the real server's port on 127.0.0.1.
            aliases: client subprotocol name -> the server's name for it.
            handshake_timeout_s: a client that sends no complete handshake within this is dropped [s].
        """
        self.host, self.requested_port, self.upstream_port = host, port, upstream_port
        self.aliases = dict(aliases or {"foxglove.websocket.v1": "foxglove.sdk.v1"})
        self.handshake_timeout_s = handshake_timeout_s
        self.port = 0
        self.connections = 0        # accepted so far
        self.rewritten = 0          # handshakes that used an alias
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
        try:
            request = await asyncio.wait_for(client_reader.readuntil(b"\r\n\r\n"), self.handshake_timeout_s)
            if len(request) > MAX_HEADER_BYTES:
                return
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
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()

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
