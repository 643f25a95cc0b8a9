"""One policy server for many robots: batching across robots, per-robot sessions, bad input isolated per robot."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from physical_ai.policy.batching import BatchedPolicy
from physical_ai.policy.observation import ObservationError
from physical_ai.policy.openpi_client import OpenpiClient, PolicyServerError
from physical_ai.policy.policy import make_policy
from physical_ai.policy.policy_server import PolicyServer, batched, policy_handler


def _echo_forward(sizes: list[int]):
    def forward(inputs):
        sizes.append(len(inputs))
        return [np.full((2, 1), x["v"][0, 0] * 10.0) for x in inputs]
    return forward


def _prepare(obs):
    if obs["v"] < 0:
        raise ObservationError("v: negative")
    return {"v": np.array([[obs["v"]]], float)}


def _together(n: int, fn) -> list:
    """Run fn(i) on n threads released at once; results (or exceptions) by i."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # returned to the test to check
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_requests_that_arrive_together_run_as_one_batch_with_their_own_results():
    sizes: list[int] = []
    batcher = BatchedPolicy(_prepare, _echo_forward(sizes), max_batch=8, wait_s=0.2)
    try:
        out = _together(6, lambda i: batcher.infer({"v": float(i)}))
    finally:
        batcher.stop()
    assert [float(o[0, 0]) for o in out] == [10.0 * i for i in range(6)]
    assert max(sizes) > 1 and sum(sizes) == 6


def test_max_batch_caps_a_batch_and_1_disables_batching():
    sizes: list[int] = []
    batcher = BatchedPolicy(_prepare, _echo_forward(sizes), max_batch=1, wait_s=0.2)
    try:
        _together(4, lambda i: batcher.infer({"v": float(i)}))
    finally:
        batcher.stop()
    assert sizes == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        BatchedPolicy(_prepare, _echo_forward([]), max_batch=0)


def test_a_bad_observation_fails_only_its_own_robot():
    sizes: list[int] = []
    batcher = BatchedPolicy(_prepare, _echo_forward(sizes), max_batch=8, wait_s=0.2)
    try:
        out = _together(4, lambda i: batcher.infer({"v": -1.0 if i == 2 else float(i)}))
    finally:
        batcher.stop()
    assert isinstance(out[2], ObservationError)
    assert [float(out[i][0, 0]) for i in (0, 1, 3)] == [0.0, 10.0, 30.0]


def test_a_failing_forward_pass_fails_its_batch_and_the_next_one_runs():
    calls = {"n": 0}

    def forward(inputs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return [np.zeros((1, 1)) for _ in inputs]
    batcher = BatchedPolicy(_prepare, forward, max_batch=4, wait_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.infer({"v": 1.0})
        assert batcher.infer({"v": 1.0}).shape == (1, 1)
    finally:
        batcher.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.infer({"v": 1.0})


def _amr_obs(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {"state": rng.normal(size=3), "obstacles": rng.normal(size=(4, 7)),
            "instruction": "drive to the drop-off station"}


def test_server_batches_robots_over_the_wire_and_matches_the_policy_run_alone():
    policy = make_policy("torch", "models/amr_nav", num_threads=1)
    batcher = batched(policy, max_batch=8, wait_s=0.05)
    assert batcher is not None
    server = PolicyServer(policy_handler(policy, batcher)).start()
    clients = [OpenpiClient(server.uri, timeout_s=10.0, robot_id=f"robot{i + 1}") for i in range(4)]
    remote = make_policy("openpi", "models/amr_nav", uri=server.uri)
    try:
        for c in clients:
            c.connect()
        assert sorted(s.robot for s in server.sessions.sessions()) == ["robot1", "robot2", "robot3", "robot4"]
        replies = _together(4, lambda i: clients[i].infer(remote.request(_amr_obs(i))))
        for i, reply in enumerate(replies):
            alone = policy.infer(_amr_obs(i)).values
            assert np.abs(reply["actions"] - alone).max() <= 1e-4
        assert max(batcher.batch_sizes) > 1          # the four robots shared forward passes
        sessions = {s.robot: s for s in server.sessions.sessions()}
        assert all(sessions[f"robot{i + 1}"].requests == 1 for i in range(4))
        # one robot's malformed request closes its own connection; the others are served on
        bad = remote.request(_amr_obs(0))
        bad["observation/state"] = np.zeros(5, np.float32)
        with pytest.raises(PolicyServerError):
            clients[0].infer(bad)
        assert clients[1].infer(remote.request(_amr_obs(1)))["actions"].shape == (10, 2)
    finally:
        for c in clients:
            c.close()
        remote.close()
        server.stop()
        batcher.stop()
