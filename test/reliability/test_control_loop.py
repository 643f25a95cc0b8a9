"""The corrector's loop cannot die silently or leave the robot moving (issue 22), over real DDS.

- SIGTERM / SIGINT end with a zero twist after a moving one (the arm and the base got nothing on these paths);
- an exception in a cycle sends the safe command at once, is counted and reported, and the loop goes on;
- a cycle that overruns `cycle_stall_s` gets the safe command sent from the monitor thread while it still runs, and
  its own (moving) command is never sent after it;
- obstacles stamped 60 s in the past are stale however fresh their arrival;
- after a 2 s SIGSTOP the base ramps from its measured (stopped) speed, not from the 1 m/s it last commanded.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import node_process
import pytest
import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from node_process import stop_node
from physical_ai_stack.msg import CorrectionStatus, Obstacle, ObstacleArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from physical_ai.control.flags import Flag
from physical_ai.convert import make_header
from physical_ai_nodes._base import COMMAND_QOS, SENSOR_QOS, STATE_QOS

ROOT = Path(__file__).resolve().parents[2]
AMR = ("points_topic:=''", "scan_topic:=''", "max_linear:=1.0", "max_linear_acc:=1.0")


class Driver:
    """A fake base: odometry follows the commands, stops after 0.5 s without one (a driver's command timeout; by
    the commands' stamps when they have them)."""

    def __init__(self, node, obstacle_age_s: float = 0.0, stamped: bool = False, accel: float | None = None) -> None:
        self.node = node
        self.accel = accel  # [m/s^2]: the base follows its commands this fast at most (None: at once)
        self._fed_at: float | None = None
        self.cmds: list[tuple[float, Twist]] = []
        self.sent_ns: list[int] = []  # TwistStamped only: when the corrector sent each command [ns, its clock]
        self.statuses: list[CorrectionStatus] = []
        self.speed = 0.0
        self.obstacle_age_s = obstacle_age_s
        self.odom_pub = node.create_publisher(Odometry, "/odom", SENSOR_QOS)
        self.cmd_pub = node.create_publisher(Twist, "/cmd_vel_in", COMMAND_QOS)
        self.obs_pub = node.create_publisher(ObstacleArray, "/perception/obstacles", STATE_QOS)
        if stamped:
            node.create_subscription(TwistStamped, "/cmd_vel", self._on_stamped, 100)
        else:
            node.create_subscription(Twist, "/cmd_vel", lambda m: self.cmds.append((time.monotonic(), m)), 100)
        node.create_subscription(CorrectionStatus, "/correction/status", self.statuses.append, STATE_QOS)

    def _on_stamped(self, msg: TwistStamped) -> None:
        self.sent_ns.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        self.cmds.append((time.monotonic(), msg.twist))

    def feed(self) -> None:
        now = self.node.get_clock().now().nanoseconds
        if self.sent_ns:  # stamped commands: the newest sent, if sent within the timeout (late deliveries are old)
            newest = max(range(len(self.sent_ns)), key=self.sent_ns.__getitem__)
            fresh = now - self.sent_ns[newest] < 500_000_000
            self.speed = self.cmds[newest][1].linear.x if fresh else 0.0
        else:
            fresh = self.cmds and time.monotonic() - self.cmds[-1][0] < 0.5
            target = self.cmds[-1][1].linear.x if fresh else 0.0
            t = time.monotonic()
            step = self.accel * (t - self._fed_at) if self.accel is not None and self._fed_at is not None else None
            self.speed = target if step is None else min(max(target, self.speed - step), self.speed + step)
            self._fed_at = t
        odom = Odometry(header=make_header("odom", now), child_frame_id="base_link")
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = self.speed
        self.odom_pub.publish(odom)
        cmd = Twist()
        cmd.linear.x = 1.0
        self.cmd_pub.publish(cmd)
        self.obs_pub.publish(ObstacleArray(header=make_header("base_link", now - int(self.obstacle_age_s * 1e9)),
                                           sensors_alive=Obstacle.SENSOR_LIDAR))

    def spin(self, seconds: float, done=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (done is not None and done()):
            self.feed()
            rclpy.spin_once(self.node, timeout_sec=0.01)

    def last(self) -> float:
        return self.cmds[-1][1].linear.x if self.cmds else float("nan")


@pytest.fixture
def ros():
    rclpy.init()
    node = rclpy.create_node("control_loop_test")
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _start(*params: str) -> subprocess.Popen:
    return node_process.start_node("trajectory_correction", "use_sim_time:=false", *AMR, *params,
                                   params_file=ROOT / "config" / "amr.yaml")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_with_a_zero_twist_after_a_moving_one(ros, sig):
    proc = _start()
    try:
        driver = Driver(ros)
        driver.spin(30.0, done=lambda: driver.last() > 0.5)
        assert driver.last() > 0.5, "the base never drove"
        proc.send_signal(sig)
        proc.wait(timeout=15)
        driver.spin(0.5)
        assert driver.last() == 0.0, f"last command after {sig.name}: {driver.last()}"
    finally:
        out = stop_node(proc)
    assert "Traceback" not in out, out[-3000:]


def test_obstacles_stamped_long_ago_are_stale_however_fresh_their_arrival(ros):
    proc = _start()
    try:
        driver = Driver(ros, obstacle_age_s=60.0)
        driver.spin(30.0, done=lambda: len(driver.statuses) > 0)  # the node is up
        n = len(driver.statuses)
        driver.spin(10.0, done=lambda: len(driver.statuses) > n + 40)
        assert len(driver.statuses) > n + 40
        assert all(abs(m.linear.x) < 1e-9 for _, m in driver.cmds), "drove on 60 s old obstacles"
        assert all(s.flags & Flag.STALE_OBSTACLES for s in driver.statuses[-10:])
    finally:
        out = stop_node(proc)
    assert "Traceback" not in out, out[-3000:]


def test_after_a_stall_the_base_ramps_from_its_measured_speed(ros):
    proc = _start("cmd_vel_stamped:=true")
    try:
        driver = Driver(ros, stamped=True)
        driver.spin(30.0, done=lambda: driver.last() > 0.95)
        assert driver.last() > 0.95
        proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()  # the fake driver stops the base after 0.5 s without commands
        driver.spin(10.0, done=lambda: time.monotonic() - t_stop >= 2.0 and driver.speed == 0.0)
        assert driver.speed == 0.0
        t_cont = ros.get_clock().now().nanoseconds
        proc.send_signal(signal.SIGCONT)
        # Commands sent before the stop may still be delivered after it (reliable retransmission): the first
        # command the corrector sent after it resumed is the one stamped after SIGCONT.
        driver.spin(5.0, done=lambda: sum(t > t_cont for t in driver.sent_ns) > 5)
        after = [m.linear.x for (_, m), sent in zip(driver.cmds, driver.sent_ns, strict=True) if sent > t_cont]
        assert after, "no command after the stall"
        # A ramp from standstill: 0.01 m/s per 10 ms cycle at 1 m/s^2 (slack for cycles standing for more).
        assert max(after[:5]) <= 0.1, f"first commands after the stall: {after[:5]} m/s to a stopped base"
    finally:
        out = stop_node(proc)
    assert "Traceback" not in out, out[-3000:]


def test_the_node_s_corrector_is_the_one_its_parameters_give_everywhere(ros):
    """One table (AMR_PARAMETERS) for the node and `amr_config` (the fleet, the run monitor, the training envs):
    the shipped config/amr.yaml, and every setting changed, build the same corrector both ways."""
    import dataclasses

    from physical_ai.bringup.stack import node_params
    from physical_ai.control.amr import AMR_PARAMETERS, amr_config, amr_parameter_default
    from physical_ai_nodes.trajectory_correction import TrajectoryCorrection

    shipped = node_params(ROOT / "config" / "amr.yaml", "trajectory_correction")
    changed = {**shipped, **{name: amr_parameter_default(name) * 0.9 + 0.01 for name in AMR_PARAMETERS}}
    for params in (shipped, changed):
        node = TrajectoryCorrection(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        try:
            built = amr_config(params)
            assert node.amr.config == dataclasses.replace(built, max_age_s=node.max_chunk_age,
                                                          max_future_s=node.max_chunk_future)
            assert {name: node.get_parameter(name).value for name in AMR_PARAMETERS} == {
                name: params.get(name, amr_parameter_default(name)) for name in AMR_PARAMETERS}
        finally:
            node.destroy_node()
    assert built.footprint.length == changed["footprint_length"] and built.goal_approach_m == changed[
        "goal_approach_m"]


def test_the_arm_node_s_corrector_is_the_one_its_parameters_give_in_process(ros):
    """The arm's table (ARM_PARAMETERS) for the node and `arm_corrector` (the in-process evaluation, the world
    model's copy): config/arm.yaml, and every setting changed, build the same corrector both ways."""
    import dataclasses

    import numpy as np

    from physical_ai.bringup.stack import node_params
    from physical_ai.control.arm import ARM_PARAMETERS, arm_corrector, arm_parameter_default
    from physical_ai_nodes.trajectory_correction import TrajectoryCorrection

    shipped = node_params(ROOT / "config" / "arm.yaml", "trajectory_correction")
    changed = {**shipped, **{name: arm_parameter_default(name) * 0.9 + 0.01 for name in ARM_PARAMETERS}}
    for params in (shipped, changed):
        node = TrajectoryCorrection(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        try:
            built = arm_corrector(params)
            assert node.arm.config == dataclasses.replace(built.config, max_age_s=node.max_chunk_age,
                                                          max_future_s=node.max_chunk_future)
            assert all(np.array_equal(getattr(node.arm.limits, f.name), getattr(built.limits, f.name))
                       for f in dataclasses.fields(built.limits))
        finally:
            node.destroy_node()
    assert built.config.gripper_range == (changed["gripper_min"], changed["gripper_max"])
    assert built.config.tracking_error_time_s == changed["tracking_error_time_s"]


@pytest.fixture
def corrector(ros):
    from physical_ai_nodes.trajectory_correction import TrajectoryCorrection

    overrides = [Parameter("mode", value="amr"), Parameter("points_topic", value=""),
                 Parameter("scan_topic", value=""), Parameter("cycle_stall_s", value=0.05),
                 Parameter("diagnostics_period_s", value=0.1)]
    node = TrajectoryCorrection(parameter_overrides=overrides)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    # The spin thread ends before the executor shuts down: rclpy's shutdown destroys its guard condition without
    # waiting for a callback in flight, which then raises in the spin thread.
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        node.on_shutdown()
        stop.set()
        thread.join(timeout=10.0)
        executor.shutdown()
        node.destroy_node()


def test_destroying_the_corrector_stops_its_loop_before_its_publishers_go(ros):
    """A node destroyed without on_shutdown (as a test or a composing process may) ends its loop first: before, the
    next cycle published on destroyed handles, logged "control cycle failed: InvalidHandle" and the loop died."""
    from physical_ai.bringup.stack import node_params
    from physical_ai_nodes.trajectory_correction import TrajectoryCorrection

    params = node_params(ROOT / "config" / "amr.yaml", "trajectory_correction")
    node = TrajectoryCorrection(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    deadline = time.monotonic() + 5.0
    while node.loop.cycles < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node.loop.cycles >= 20
    node.destroy_node()
    cycles = node.loop.cycles
    time.sleep(0.2)
    assert node.loop.cycles == cycles, "the loop kept cycling after destroy_node"
    assert node.loop.error is None, f"a cycle ran on destroyed handles: {node.loop.error!r}"


def test_an_exception_in_a_cycle_sends_the_safe_command_and_the_loop_goes_on(ros, corrector):
    driver = Driver(ros)
    driver.spin(30.0, done=lambda: driver.last() > 0.5)
    assert driver.last() > 0.5
    real_step = corrector.amr.step

    def failing(*args, **kwargs):
        raise FloatingPointError("injected")

    corrector.amr.step = failing
    # a zero command can also come from a stale input on a loaded machine: wait for the failing cycle as well
    driver.spin(5.0, done=lambda: driver.last() == 0.0 and corrector.counter("cycle_error") > 0)
    assert driver.last() == 0.0, "no safe command after a failing cycle"
    assert corrector.counter("cycle_error") > 0
    assert corrector.diagnostic_status().level == corrector.diagnostic_status().ERROR
    cycles = corrector.loop.cycles
    corrector.amr.step = real_step
    driver.spin(10.0, done=lambda: driver.last() > 0.5)
    assert corrector.loop.cycles > cycles and corrector.loop.error is None
    assert driver.last() > 0.5, "the loop did not recover"


def stall_next_step(corrector, seconds: float) -> threading.Event:
    """Make the corrector's next AMR step take `seconds` longer (once); the event is set when that step starts."""
    real_step = corrector.amr.step
    stalled = threading.Event()

    def slow(*args, **kwargs):
        corrector.amr.step = real_step
        stalled.set()
        time.sleep(seconds)
        return real_step(*args, **kwargs)

    corrector.amr.step = slow
    return stalled


def test_an_overrunning_cycle_gets_the_safe_command_while_it_runs_and_its_own_is_discarded(ros, corrector):
    driver = Driver(ros)
    driver.spin(30.0, done=lambda: driver.last() > 0.5)
    assert driver.last() > 0.5
    stalled = stall_next_step(corrector, 1.0)  # 100 cycles long; the monitor fires after cycle_stall_s = 0.05 s
    driver.spin(2.0, done=stalled.is_set)
    t_stall = time.monotonic()
    driver.spin(0.6)
    during = [(t, m.linear.x) for t, m in driver.cmds if t >= t_stall]
    assert during and during[0][1] == 0.0 and during[0][0] - t_stall < 0.5, during[:3]
    assert all(v == 0.0 for t, v in during if t < t_stall + 0.6), "the stalled cycle's command went out"
    assert corrector.counter("cycle_overrun") >= 1
    driver.spin(10.0, done=lambda: driver.last() > 0.5)
    assert driver.last() > 0.5, "the loop did not recover after the overrun"


def test_after_the_safe_command_the_ramp_starts_from_it_not_from_the_braking_base(ros, corrector):
    """A cycle overruns while the base drives at ~1 m/s: the safe zero twist goes out, and the base, braking at
    1 m/s^2, still measures ~0.9 m/s when the loop resumes. The next commands ramp up from the zero on the wire:
    resumed from the measured speed, they stepped from 0 back to ~0.99 m/s, beyond the acceleration limit (the
    fleet through the nodes at load 6)."""
    driver = Driver(ros, accel=1.0)
    driver.spin(30.0, done=lambda: driver.last() > 0.9 and driver.speed > 0.9)
    assert driver.last() > 0.9
    # past cycle_stall_s = 0.05 s, within resume_gap_s = 0.1 s: the odometry is still fresh when the loop resumes
    stalled = stall_next_step(corrector, 0.075)
    driver.spin(2.0, done=stalled.is_set)
    driver.spin(1.0, done=lambda: 0.0 in [m.linear.x for _, m in driver.cmds[-50:]] and driver.last() > 0.0)
    driver.spin(0.05)
    cmds = [m.linear.x for _, m in driver.cmds]
    assert corrector.counter("cycle_overrun") >= 1
    zero = len(cmds) - 1 - cmds[::-1].index(0.0)  # the last zero: the safe command
    after = cmds[zero + 1: zero + 4]
    assert after, "no command after the safe one"
    # 0.01 m/s per 10 ms cycle at 1 m/s^2, with slack for cycles standing for more
    assert max(after) <= 0.1, f"commands after the safe zero: {after} m/s"
