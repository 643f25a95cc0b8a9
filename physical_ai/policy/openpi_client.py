"""A client for policy servers speaking the openpi websocket protocol (pi0 / pi0.5 on a GPU machine).

Protocol (as served by openpi's `WebsocketPolicyServer`):
- the client opens a websocket (no compression); the server first sends one binary frame, a msgpack map of
  metadata;
- each request is one binary frame, a msgpack map of observations (numpy arrays via `msgpack_numpy`); the reply is
  one binary frame, a map holding at least "actions" (H x D) and usually "server_timing";
- on a server-side error the server sends a text frame (a traceback) and closes the connection.

Robustness: every connect and reply has a timeout; after a failure the connection is dropped (a late reply would
desynchronise request and response) and reconnection waits an exponentially growing backoff, so a dead server is
not hammered and callers get a fast `PolicyServerError` meanwhile. Every failure counts, a reply the caller finds
malformed included (`reject`): a server sending garbage cannot make the client reconnect in a tight loop.

A peer is not trusted: frames larger than `max_message_bytes` close the connection (websockets refuses them before
buffering them whole), the metadata must be a map with string keys, and a reply must be a map. `wss://` URIs
use TLS, verified against the system's trust store or `ca_file`; `api_key` is sent as a header.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from physical_ai.policy import msgpack_numpy


class PolicyServerError(RuntimeError):
    """The policy server is unreachable, timed out, or reported an error."""


class OpenpiClient:
    """Synchronous, thread-safe openpi protocol client with timeouts and reconnect backoff."""

    def __init__(self, uri: str, timeout_s: float = 1.0, connect_timeout_s: float = 2.0,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 5.0, api_key: str = "",
                 robot_id: str = "", max_message_bytes: int = 16 * 1024 * 1024, ca_file: str = "") -> None:
        """Configure the object.

        Args:
            uri: e.g. "ws://gpu-host:8000".
            timeout_s: longest wait for one reply [s].
            connect_timeout_s: longest wait for the connection and the metadata frame [s].
            backoff_initial_s: wait after the first failure before reconnecting [s]; doubles per failure.
            backoff_max_s: cap of the reconnect wait [s].
            api_key: sent as "Authorization: Api-Key <key>" when not empty.
            robot_id: sent as "X-Robot-Id" when not empty: names this robot's session on a server shared by a fleet.
            max_message_bytes: largest frame accepted from the server [B]; a larger one is a failure.
            ca_file: PEM certificate(s) that a wss:// server's certificate must chain to ('' = system trust store).
        """
        if not uri.startswith(("ws://", "wss://")):
            raise ValueError(f"server uri must start with ws:// or wss://, got {uri!r}")
        self.uri = uri
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_message_bytes = max_message_bytes
        self._ssl: ssl.SSLContext | None = None
        if uri.startswith("wss://"):
            self._ssl = ssl.create_default_context(cafile=ca_file or None)
        elif ca_file:
            raise ValueError(f"ca_file is for wss:// servers; {uri!r} is not encrypted")
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
        if robot_id:
            headers["X-Robot-Id"] = robot_id
        self._headers = headers or None
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._metadata: dict[str, Any] = {}
        self._failures = 0
        self._retry_at = 0.0
        self.reconnects = 0
        self.last_error = ""

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._ws is not None

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata frame the server sent on the current (or last) connection."""
        return self._metadata

    def retry_in_s(self) -> float:
        """Seconds until the next reconnect attempt is allowed (0 when connected or due)."""
        return 0.0 if self._ws is not None else max(0.0, self._retry_at - time.monotonic())

    def connect(self) -> dict[str, Any]:
        """Open the connection now if needed (honouring the backoff); return the server metadata."""
        with self._lock:
            self._ensure_connected()
            return self._metadata

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send one observation and return the server's reply; raise `PolicyServerError` on any failure."""
        with self._lock:
            ws = self._ensure_connected()
            try:
                ws.send(msgpack_numpy.packb(obs))
                reply = ws.recv(timeout=self.timeout_s)
            except TimeoutError as exc:
                self._fail(f"no reply within {self.timeout_s:.3f} s")
                raise PolicyServerError(self.last_error) from exc
            except (OSError, WebSocketException) as exc:
                self._fail(f"connection lost: {exc}")
                raise PolicyServerError(self.last_error) from exc
            if isinstance(reply, str):
                self._fail(f"server error: {reply.strip().splitlines()[-1] if reply.strip() else 'unknown'}")
                raise PolicyServerError(self.last_error)
            try:
                result = _decode(reply)
            except Exception as exc:  # malformed bytes from the peer: drop the connection
                self._fail(f"undecodable reply: {exc}")
                raise PolicyServerError(self.last_error) from exc
            if not isinstance(result, dict):
                self._fail(f"reply is a {type(result).__name__}, expected a map")
                raise PolicyServerError(self.last_error)
            return result

    def reject(self, reason: str) -> None:
        """The caller found the last reply malformed: a failure like any other (drop the connection, back off)."""
        with self._lock:
            self._fail(f"malformed reply: {reason}")

    def succeeded(self) -> None:
        """The caller accepted the last reply: the backoff starts from the beginning after the next failure."""
        with self._lock:
            self._failures = 0

    def close(self) -> None:
        """Close the connection (a later `infer` reconnects)."""
        with self._lock:
            self._drop()

    # ---- internals (lock held) ----------------------------------------------------------------------------------
    def _ensure_connected(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise PolicyServerError(f"reconnecting to {self.uri} in {wait:.2f} s (last error: {self.last_error})")
        try:
            ws = connect(self.uri, open_timeout=self.connect_timeout_s, compression=None,
                         max_size=self.max_message_bytes, additional_headers=self._headers, close_timeout=0.5,
                         ssl=self._ssl, legacy=True)
        except (OSError, TimeoutError, WebSocketException, ssl.SSLError) as exc:
            self._fail(f"cannot connect to {self.uri}: {exc}")
            raise PolicyServerError(self.last_error) from exc
        try:
            first = ws.recv(timeout=self.connect_timeout_s)
            metadata = _decode(first) if isinstance(first, bytes) else None
            if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
                raise PolicyServerError("first frame is not a metadata map with string keys")
        except Exception as exc:  # whatever the peer sent: a failure with backoff, never an escaping KeyError
            ws.close()
            self._fail(f"no metadata from {self.uri}: {exc}")
            raise PolicyServerError(self.last_error) from exc
        if self._failures or self.reconnects or self._metadata:
            self.reconnects += 1
        self._ws = ws
        self._metadata = metadata
        return ws

    def _fail(self, message: str) -> None:
        self.last_error = message
        self._drop()
        self._failures += 1
        backoff = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (self._failures - 1))
        self._retry_at = time.monotonic() + backoff

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except (OSError, WebSocketException):
                pass
            self._ws = None


def _decode(frame: bytes) -> Any:
    """msgpack_numpy decoding; any error in a peer's bytes (a KeyError from a bad ndarray map) is a ValueError."""
    try:
        return msgpack_numpy.unpackb(frame)
    except Exception as exc:
        raise ValueError(f"undecodable frame: {exc!r}") from exc
