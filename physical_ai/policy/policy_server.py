"""A local policy server speaking the openpi websocket protocol, for tests and for serving our own checkpoints.

    python -m physical_ai.policy.policy_server models/arm_pick --port 8000 [--backend onnx]

Protocol as in openpi_client.py: metadata frame on connect, then one msgpack reply per msgpack request; a failing
request gets a text frame (the error) and the connection is closed with code 1011.
"""

from __future__ import annotations

import argparse
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from physical_ai.policy import msgpack_numpy
from physical_ai.policy.policy import Policy, make_policy

InferFn = Callable[[dict[str, Any]], dict[str, Any]]


def policy_handler(policy: Policy) -> InferFn:
    """Adapt one of our policies to the wire format: "observation/<group>" and "prompt" in, "actions" out."""
    def infer(request: dict[str, Any]) -> dict[str, Any]:
        obs: dict[str, Any] = {k.split("/", 1)[1]: v for k, v in request.items() if k.startswith("observation/")}
        if "prompt" in request:
            obs["instruction"] = request["prompt"]
        return {"actions": policy.infer(obs).values.astype(np.float32)}
    return infer


class PolicyServer:
    """Serves `infer_fn` on ws://host:port in a background thread; `stop()` also drops open connections."""

    def __init__(self, infer_fn: InferFn, host: str = "127.0.0.1", port: int = 0,
                 metadata: dict[str, Any] | None = None, delay_s: float = 0.0) -> None:
        """Configure the object.

        Args:
            infer_fn: request dict -> reply dict (must hold "actions").
            host: address to listen on.
            port: TCP port (0: any free port; see `.port`).
            metadata: sent to each client on connect.
            delay_s: added before each reply (to test client timeouts).
        """
        self.infer_fn = infer_fn
        self.metadata = metadata or {}
        self.delay_s = delay_s
        self.requests = 0
        self._connections: set[ServerConnection] = set()
        self._lock = threading.Lock()
        self._server: Server = serve(self._handle, host, port, compression=None, max_size=None)
        self.port = int(self._server.socket.getsockname()[1])
        self.uri = f"ws://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="policy-server", daemon=True)

    def start(self) -> PolicyServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection."""
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for ws in connections:
            ws.close()
        self._thread.join(2.0)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, ws: ServerConnection) -> None:
        with self._lock:
            self._connections.add(ws)
        try:
            ws.send(msgpack_numpy.packb(self.metadata))
            while True:
                request = msgpack_numpy.unpackb(ws.recv())
                start = time.monotonic()
                try:
                    reply = self.infer_fn(request)
                except Exception:  # report to the client as the protocol does, then close
                    ws.send(traceback.format_exc())
                    ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                    return
                reply["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1e3}
                if self.delay_s:
                    time.sleep(self.delay_s)
                self.requests += 1
                ws.send(msgpack_numpy.packb(reply))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.discard(ws)


def main(argv: list[str] | None = None) -> int:
    """Serve a checkpoint until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors / model.onnx)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    policy = make_policy(args.backend, args.checkpoint)
    server = PolicyServer(policy_handler(policy), args.host, args.port,
                          metadata={"name": policy.config.name, "embodiment": policy.config.embodiment,
                                    "action_names": list(policy.config.action.names), "dt": policy.config.dt})
    print(f"serving {args.checkpoint} ({args.backend}) on {server.uri}", flush=True)
    server.start()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
