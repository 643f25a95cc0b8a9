"""openpi protocol client vs the local server (incl. restart and timeout), msgpack codec, async chunk execution."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
from policy_testlib import make_checkpoint, raw_observation

from physical_ai.policy import msgpack_numpy
from physical_ai.policy.chunking import NS, AsyncChunkRunner, trim_elapsed
from physical_ai.policy.observation import ObservationError
from physical_ai.policy.openpi_client import OpenpiClient, PolicyServerError
from physical_ai.policy.policy import ActionChunkResult, Policy, make_policy
from physical_ai.policy.policy_server import PolicyServer, policy_handler


@pytest.fixture(scope="module")
def amr_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("amr_ckpt")
    make_checkpoint(path, "amr")
    return path


def _wait(predicate, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---- wire format --------------------------------------------------------------------------------------------------
def test_msgpack_numpy_round_trip_and_wire_keys():
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int64(7), "t": "text", "n": [1, 2.5]}
    back = msgpack_numpy.unpackb(msgpack_numpy.packb(data))
    np.testing.assert_array_equal(back["a"], data["a"])
    assert back["a"].dtype == np.float32 and back["s"] == 7 and back["t"] == "text" and back["n"] == [1, 2.5]
    # The openpi encoding: a map with these byte keys, readable by plain msgpack.
    plain = msgpack.unpackb(msgpack_numpy.packb({"a": data["a"]}), raw=False)
    assert plain["a"][b"__ndarray__"] is True and plain["a"][b"dtype"] == "<f4" and plain["a"][b"shape"] == [2, 3]
    with pytest.raises(ValueError, match="unsupported dtype"):
        msgpack_numpy.packb({"o": np.array([object()])})


# ---- openpi client against the local server --------------------------------------------------------------------
def test_openpi_backend_matches_local_policy(amr_ckpt):
    local = make_policy("torch", amr_ckpt)
    with PolicyServer(policy_handler(local), metadata={"model": "amr_test"}) as server:
        remote = make_policy("openpi", amr_ckpt, uri=server.uri, timeout_s=2.0)
        obs = raw_observation(local.config)
        got = remote.infer(obs)
        assert remote.client.metadata == {"model": "amr_test"}
        np.testing.assert_allclose(got.values, local.infer(obs).values, atol=1e-5)
        assert got.names == ("linear_x", "angular_z") and remote.health() == "ok"
        remote.close()


def test_healthz_answers_200_as_openpi_does(amr_ckpt):
    import urllib.error
    import urllib.request

    with PolicyServer(policy_handler(make_policy("torch", amr_ckpt))) as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as reply:
            assert reply.status == 200 and reply.read() == b"OK\n"
        with pytest.raises(urllib.error.HTTPError) as refused:  # any other plain GET still wants a WebSocket
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert refused.value.code == 426


def test_key_presets_between_our_client_and_server(amr_ckpt, tmp_path):
    """A DROID-convention client and server: the state split into joint and gripper keys and joined back."""
    from physical_ai.policy.keymap import server_keymap

    spec_dir = tmp_path / "arm"
    make_checkpoint(spec_dir, "arm")
    local = make_policy("torch", spec_dir)
    seen: list[dict] = []
    extra = ["observation/parts=parts", "observation/obstacles=obstacles", "observation/joint_velocity=state[8:15]"]
    handler = policy_handler(local, keys=server_keymap(local.config, "droid", extra))

    def record(request):
        seen.append(request)
        return handler(request)

    with PolicyServer(record) as server:
        remote = make_policy("openpi", spec_dir, uri=server.uri, key_preset="droid", key_map=extra, timeout_s=5.0)
        obs = raw_observation(local.config)
        np.testing.assert_allclose(remote.infer(obs).values, local.infer(obs).values, atol=1e-5)
        remote.close()
    assert sorted(seen[0]) == ["observation/exterior_image_1_left", "observation/gripper_position",
                               "observation/joint_position", "observation/joint_velocity", "observation/obstacles",
                               "observation/parts", "prompt"]
    assert seen[0]["observation/joint_position"].shape == (7,)


def test_openpi_reconnects_after_server_restart(amr_ckpt):
    local = make_policy("torch", amr_ckpt)
    obs = raw_observation(local.config)
    server = PolicyServer(policy_handler(local)).start()
    port = server.port
    client = make_policy("openpi", amr_ckpt, uri=server.uri, timeout_s=2.0, backoff_initial_s=0.1,
                         backoff_max_s=0.4)
    try:
        client.infer(obs)
        server.stop()
        with pytest.raises(PolicyServerError):
            client.infer(obs)
        assert not client.ready() and "disconnected" in client.health()
        # While the server is down, attempts back off exponentially (fast failures in between, no hammering).
        failures = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if client.ready():
                with pytest.raises(PolicyServerError):
                    client.infer(obs)
                failures += 1
            time.sleep(0.01)
        assert 1 <= failures <= 6
        server = PolicyServer(policy_handler(local), port=port).start()
        assert _wait(client.ready, 1.0)
        result = client.infer(obs)
        assert result.values.shape == (10, 2) and client.client.reconnects >= 1 and client.health() == "ok"
    finally:
        client.close()
        server.stop()


def test_openpi_timeout_then_recovery(amr_ckpt):
    local = make_policy("torch", amr_ckpt)
    obs = raw_observation(local.config)
    with PolicyServer(policy_handler(local), delay_s=0.5) as server:
        client = make_policy("openpi", amr_ckpt, uri=server.uri, timeout_s=0.1, backoff_initial_s=0.05)
        start = time.monotonic()
        with pytest.raises(PolicyServerError, match="no reply within"):
            client.infer(obs)
        assert time.monotonic() - start < 0.45  # gave up at the timeout, did not wait for the slow reply
        server.delay_s = 0.0
        assert _wait(client.ready, 1.0)
        # A fresh connection: the late reply of the timed-out request cannot be mistaken for this one.
        np.testing.assert_allclose(client.infer(obs).values, local.infer(obs).values, atol=1e-5)
        client.close()


def test_openpi_server_error_and_bad_replies(amr_ckpt):
    def broken(_request):
        raise RuntimeError("model exploded")

    with PolicyServer(broken) as server:
        client = OpenpiClient(server.uri, timeout_s=1.0)
        with pytest.raises(PolicyServerError, match="model exploded"):
            client.infer({"x": np.zeros(2)})
        assert not client.connected
    with PolicyServer(lambda _r: {"actions": np.zeros((4, 3))}) as server:
        policy = make_policy("openpi", amr_ckpt, uri=server.uri)
        with pytest.raises(PolicyServerError, match=r"expected \(H, 2\)"):
            policy.infer(raw_observation(policy.config))
    with pytest.raises(PolicyServerError, match="cannot connect"):
        OpenpiClient("ws://127.0.0.1:9", connect_timeout_s=0.5).infer({})


# ---- async chunk execution -----------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000 * NS
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            return self.ns

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.ns += round(seconds * NS)


class ScriptedPolicy(Policy):
    """Returns values[k] = k (so a row tells which step it is); advances a fake clock by `latency_s` per call."""

    backend = "scripted"

    def __init__(self, config, clock: FakeClock, latency_s: float, nan: bool = False) -> None:
        super().__init__(config)
        self.clock, self.latency_s, self.nan = clock, latency_s, nan
        self.calls = 0
        self.executed: list[tuple[float, int, int]] = []  # (first row's value, rows, delay steps) per `executing`
        self.gate = threading.Event()
        self.gate.set()

    def executing(self, rows, delay_steps):
        self.executed.append((float(rows[0, 0]), len(rows), delay_steps))

    def _infer(self, obs):
        self.gate.wait(5.0)
        self.calls += 1
        self.clock.advance(self.latency_s)
        values = np.repeat(np.arange(self.config.chunk_length, dtype=float)[:, None], self.config.action_dim, 1)
        if self.nan:
            values[3, 1] = np.nan
        return values


def test_trim_elapsed_skips_the_past_only():
    result = ActionChunkResult(values=np.arange(10.0)[:, None], names=("v",), dt=0.1, latency_ms=1.0,
                               embodiment="amr", model_id="m")
    t0 = 5 * NS
    same = trim_elapsed(result, t0, t0)
    assert same.skipped == 0 and same.start_time_ns == t0
    chunk = trim_elapsed(result, t0, t0 + round(0.35 * NS))
    # Steps 0..2 ended before now; step 3 is in effect now and is kept.
    assert chunk.skipped == 3 and chunk.values[0, 0] == 3.0 and chunk.start_time_ns == t0 + round(0.3 * NS)
    assert chunk.end_time_ns == t0 + NS
    assert trim_elapsed(result, t0, t0 + NS) is None


def test_async_runner_requests_early_and_skips_prefix(amr_ckpt):
    from physical_ai.policy.spec import load_config

    config = load_config(amr_ckpt)  # 10 steps x 0.1 s
    clock = FakeClock()
    policy = ScriptedPolicy(config, clock, latency_s=0.25)
    published, drops = [], []
    runner = AsyncChunkRunner(policy, clock, published.append, lambda r, d: drops.append(r),
                              request_threshold_s=0.4)
    stamps = []

    def observe():
        stamps.append(clock())
        return {"state": np.zeros(5)}, clock()

    try:
        assert runner.maybe_request(observe)  # no chunk yet: due at once
        assert not runner.maybe_request(observe)  # busy: one inference at a time
        assert _wait(lambda: len(published) == 1)
        first = published[0]
        # Computed from the observation 0.25 s before it was ready: steps 0 and 1 are skipped, not replayed.
        assert first.obs_time_ns == stamps[0] and first.skipped == 2 and first.values[0, 0] == 2.0
        assert first.start_time_ns == stamps[0] + round(0.2 * NS)
        assert not runner.due(clock())  # 0.75 s left > 0.4 s threshold
        clock.advance(0.3)
        assert not runner.due(clock())  # 0.45 s left
        clock.advance(0.1)
        assert runner.due(clock())  # 0.35 s left: ask before it runs out
        assert runner.maybe_request(observe)
        assert _wait(lambda: len(published) == 2)
        second = published[1]
        assert second.obs_time_ns > first.obs_time_ns and second.skipped == 2
        assert second.start_time_ns < first.end_time_ns  # the new chunk arrived while the old one still ran
        # Told before the second inference: the first chunk's rows from its observation's time (0.65 s: row 6 of
        # 0-9), of which 3 play before it arrives (the last latency, 0.25 s, in 0.1 s steps, rounded up).
        assert policy.executed == [(6.0, 4, 3)]
        assert drops == []
    finally:
        runner.stop()


def test_async_runner_requests_again_after_the_clock_jumps_back_and_reset(amr_ckpt):
    from physical_ai.policy.spec import load_config

    config = load_config(amr_ckpt)
    clock = FakeClock()
    published: list = []
    runner = AsyncChunkRunner(ScriptedPolicy(config, clock, latency_s=0.01), clock, published.append,
                              lambda r, d: None, request_threshold_s=0.4)
    try:
        assert runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        assert _wait(lambda: len(published) == 1)
        with clock.lock:
            clock.ns = 1 * NS  # a simulator reset: ROS time restarts far below the last request
        runner.reset()
        assert runner.due(clock()), "the request time of the old clock blocked every new request"
        assert runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        assert _wait(lambda: len(published) == 2) and published[1].obs_time_ns == 1 * NS
    finally:
        runner.stop()


def test_async_runner_drops_nan_and_expired_and_bad_observations(amr_ckpt):
    from physical_ai.policy.spec import load_config

    config = load_config(amr_ckpt)
    clock = FakeClock()
    published, drops = [], []
    runner = AsyncChunkRunner(ScriptedPolicy(config, clock, 0.01, nan=True), clock, published.append,
                              lambda r, d: drops.append(r), request_threshold_s=0.5)
    try:
        assert runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        assert _wait(lambda: drops == ["non_finite_output"])
        assert published == [] and runner.current is None

        def missing():
            raise ObservationError("stale: joints is 900 ms old")

        assert not runner.maybe_request(missing)
        assert drops[-1] == "observation" and not runner.busy
    finally:
        runner.stop()
    slow = ScriptedPolicy(config, clock, latency_s=1.5)  # slower than the whole 1 s chunk
    runner = AsyncChunkRunner(slow, clock, published.append, lambda r, d: drops.append(r), 0.5)
    try:
        assert runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        assert _wait(lambda: drops[-1] == "expired")
        assert published == []
    finally:
        runner.stop()


def test_async_runner_inference_is_off_the_caller_thread(amr_ckpt):
    from physical_ai.policy.spec import load_config

    config = load_config(amr_ckpt)
    clock = FakeClock()
    policy = ScriptedPolicy(config, clock, 0.0)
    policy.gate.clear()  # the model "hangs"
    runner = AsyncChunkRunner(policy, clock, lambda c: None, lambda r, d: None, 0.5)
    try:
        start = time.monotonic()
        assert runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        for _ in range(100):  # the control side keeps running while the model is busy
            runner.maybe_request(lambda: ({"state": np.zeros(5)}, clock()))
        assert time.monotonic() - start < 0.5 and runner.busy
        policy.gate.set()
        assert _wait(lambda: not runner.busy)
    finally:
        runner.stop()
