"""`physai serve`: our checkpoints behind the openpi websocket protocol (openpi-client and our backends connect).

    physai serve models/arm_pick --port 8000 [--backend onnx] [--max-batch 8] [--keys libero]

Protocol as in openpi_client.py: metadata frame on connect, then one msgpack reply per msgpack request; a failing
request gets a text frame (the error) and the connection is closed with code 1011. `GET /healthz` answers 200.
One server serves many robots: each connection is a session (named by the client's `X-Robot-Id` header), and
requests of different robots that arrive together are batched into one forward pass
(physical_ai/policy/batching.py). Request keys follow a key map (physical_ai/policy/keymap.py; default `physai`:
"observation/<group>", "prompt"): keys of the preset whose group the checkpoint does not read (a LIBERO client's
wrist image for a one-camera model) are accepted and discarded, listed in the metadata (`ignored_keys`) and at
start-up; any other unknown key is an error.
"""

from __future__ import annotations

import argparse
import http
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from physical_ai.policy import msgpack_numpy
from physical_ai.policy.batching import ROBOT_ID_HEADER, BatchedPolicy, SessionTable, current_session

if TYPE_CHECKING:  # the LeRobot environment imports this module without the stack's policy backends
    from physical_ai.policy.keymap import KeyMap
    from physical_ai.policy.policy import Policy

InferFn = Callable[[dict[str, Any]], dict[str, Any]]


def policy_handler(policy: Policy, batcher: BatchedPolicy | None = None, keys: KeyMap | None = None) -> InferFn:
    """Adapt one of our policies to the wire format: request keys per `keys` in, its actions key out.

    Args:
        policy: any backend.
        batcher: with one (see `batched`), robots' requests that arrive together run as one forward pass.
        keys: the key map (default: the `physai` preset for the policy's spec, unknown preset keys ignored).
    """
    from physical_ai.policy.keymap import server_keymap

    keys = keys or server_keymap(policy.config)

    def infer(request: dict[str, Any]) -> dict[str, Any]:
        obs = keys.decode(request)
        if "instruction" in obs:
            obs["instruction"] = str(obs["instruction"])
        actions = batcher.infer(obs) if batcher is not None else policy.infer(obs).values
        return {keys.actions_key: np.asarray(actions, dtype=np.float32)}
    return infer


def batched(policy: Policy, max_batch: int, wait_s: float) -> BatchedPolicy | None:
    """A batcher for a policy that can run stacked observations (the torch backend), else None."""
    prepare, forward = getattr(policy, "prepare", None), getattr(policy, "forward_batch", None)
    if max_batch <= 1 or prepare is None or forward is None:
        return None
    return BatchedPolicy(prepare, forward, max_batch=max_batch, wait_s=wait_s)


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
        self.log_sessions = False
        self.requests = 0
        self.sessions = SessionTable()
        self._connections: set[ServerConnection] = set()
        self._lock = threading.Lock()
        self._server: Server = serve(self._handle, host, port, compression=None, max_size=None,
                                     process_request=_health_check)
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
        session = self.sessions.open(ws.request.headers.get(ROBOT_ID_HEADER, "") if ws.request else "",
                                     str(ws.remote_address))
        with self._lock:
            self._connections.add(ws)
        try:
            ws.send(msgpack_numpy.packb(self.metadata))
            while True:
                request = msgpack_numpy.unpackb(ws.recv())
                start = time.monotonic()
                token = current_session.set(session)
                try:
                    reply = self.infer_fn(request)
                except Exception:  # report to the client as the protocol does, then close
                    session.errors += 1
                    ws.send(traceback.format_exc())
                    ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                    return
                finally:
                    current_session.reset(token)
                infer_ms = (time.monotonic() - start) * 1e3
                reply["server_timing"] = {"infer_ms": infer_ms}
                if self.delay_s:
                    time.sleep(self.delay_s)
                self.requests += 1
                session.requests += 1
                session.latency_ms.add(infer_ms)
                ws.send(msgpack_numpy.packb(reply))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.discard(ws)
            self.sessions.close(session)
            if self.log_sessions:
                print(f"session closed: {session.summary()}", flush=True)


def _health_check(connection: ServerConnection, request: Request) -> Response | None:
    """`GET /healthz` answers 200 "OK" without a WebSocket upgrade, as openpi's server does (load balancers)."""
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`physai serve` options."""
    parser.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors / model.onnx)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=8,
                        help="most robots' requests run as one forward pass (1: no batching; torch backend)")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0,
                        help="longest a request waits for other robots' to join its batch [ms]")
    parser.add_argument("--threads", type=int, default=1,
                        help="model threads (more only pays on a machine with cores to spare: on a busy CPU, "
                             "threads that spin-wait slow everything down)")
    parser.add_argument("--keys", default="physai", help="request key preset: physai, libero, droid, lerobot")
    parser.add_argument("--key-map", action="append", default=[], metavar="KEY=GROUP",
                        help="request key added to or replacing the preset's (repeatable); KEY= removes one")
    parser.add_argument("--actions-key", default="actions", help="reply key of the actions")


def run(args: argparse.Namespace) -> int:
    """Serve a checkpoint until Ctrl-C or SIGTERM."""
    import signal

    from physical_ai.policy.keymap import KeyMapError, server_keymap
    from physical_ai.policy.policy import make_policy
    from physical_ai.policy.spec import ConfigError

    try:
        policy = make_policy(args.backend, args.checkpoint, num_threads=args.threads)
        keys = server_keymap(policy.config, args.keys, args.key_map, args.actions_key)
    except (ConfigError, KeyMapError) as exc:
        print(f"physai serve: {exc}", flush=True)
        return 2
    batcher = batched(policy, args.max_batch, args.batch_wait_ms * 1e-3)
    metadata = {"name": policy.config.name, "embodiment": policy.config.embodiment,
                "action_names": list(policy.config.action.names), "dt": policy.config.dt,
                "keys": {key: source.group if source.lo is None else f"state[{source.lo}:{source.hi}]"
                         for key, source in keys.request},
                "ignored_keys": keys.ignored_keys(), "actions_key": keys.actions_key}
    server = PolicyServer(policy_handler(policy, batcher, keys), args.host, args.port, metadata=metadata)
    server.log_sessions = True
    print(f"serving {args.checkpoint} ({args.backend}) on {server.uri}, "
          f"{f'batches of up to {args.max_batch}' if batcher else 'no batching'} (health: "
          f"http://{args.host}:{server.port}/healthz); request keys {sorted(metadata['keys'])}"
          + (f", ignored {keys.ignored_keys()}" if keys.ignored_keys() else ""), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    if batcher is not None:
        batcher.stop()
    policy.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m physical_ai.policy.policy_server`: the same as `physai serve`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
