"""Steps a scenario and samples its sensors at their rates, with noise, dropouts and latency (no ROS).

`SimRunner.advance(seconds)` returns the sensor outputs delivered in that interval, each stamped with its
measurement time; the simulator node turns them into messages, and the benchmarks time them directly. A scenario
with several robots (the fleet) has one sensor rig per robot (`Scenario.rigs`): each output names its robot.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physical_ai.sim.scenarios import Scenario
from physical_ai.sim.sensors import (
    DelayLine,
    Lidar,
    RgbdCamera,
    SensorNoise,
    TactilePads,
    add_depth_noise,
    add_rgb_noise,
    noisy_ranges,
)

NS = 1_000_000_000
STREAMS = ("joint_states", "odom", "tf", "rgbd", "lidar", "scan", "tactile", "ground_truth")


@dataclass
class StreamConfig:
    """Rate and noise of one output stream; rate 0 disables it."""

    rate_hz: float
    noise: SensorNoise = field(default_factory=SensorNoise)


def default_streams(scenario: str) -> dict[str, StreamConfig]:
    """Nominal rates per scenario (camera 15 Hz, LiDAR 10 Hz, joint states 100 Hz)."""
    s = {"joint_states": StreamConfig(100.0), "tf": StreamConfig(50.0), "rgbd": StreamConfig(15.0),
         "ground_truth": StreamConfig(20.0)}
    if scenario == "arm":
        s["tactile"] = StreamConfig(100.0)
    else:
        s.update(odom=StreamConfig(50.0), lidar=StreamConfig(10.0))
        if scenario in ("amr", "fleet"):
            s["scan"] = StreamConfig(10.0)
    return s


@dataclass
class SimOutput:
    """One delivered measurement (`robot`: the rig's namespace, '' for a one-robot scenario)."""

    stream: str
    stamp_ns: int
    data: Any
    robot: str = ""


@dataclass
class _Rig:
    """The sensors of one robot: `view` answers joint_state/odometry/frames/ground_truth for it."""

    prefix: str
    view: Any
    streams: dict[str, StreamConfig]
    camera: RgbdCamera | None = None
    lidar: Lidar | None = None
    scanner: Lidar | None = None
    tactile: TactilePads | None = None


@dataclass
class SensorGeometry:
    """Image size and LiDAR layout."""

    width: int = 640
    height: int = 480
    max_depth: float = 10.0
    lidar_rings: int = 16
    lidar_horizontal: int = 1800
    lidar_min_elev_deg: float = -15.0
    lidar_max_elev_deg: float = 15.0
    lidar_range_max: float = 30.0
    scan_beams: int = 720
    scan_range_max: float = 20.0


RENDER_NICE = 5  # the render thread's nice value above its creator's under normal scheduling


def _below_caller(policy: int, param: os.sched_param) -> None:
    """Run this thread (and the GL threads it starts) below its creator's priority.

    One real-time priority lower if real-time, else `RENDER_NICE` nice levels lower.
    A render at the priority of stepping would hold cores that stepping and the LiDAR's delivery need (on a robot,
    the camera is a device of its own); below it, the render still runs ahead of normal processes when real-time.
    Under normal scheduling a software (llvmpipe) render took a core in bursts of ~12 ms, 15 times a second, beside
    the raycasts, perception and the corrector; the nice value is per thread on Linux and inherited by the GL
    threads the render starts.
    """
    if policy in (os.SCHED_FIFO, os.SCHED_RR):
        if param.sched_priority > 1:
            os.sched_setscheduler(0, policy, os.sched_param(param.sched_priority - 1))
        return
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + RENDER_NICE, 19))


class SimRunner:
    """Owns a scenario and its sensors; see module docstring."""

    def __init__(self, scenario: Scenario, streams: dict[str, StreamConfig] | None = None,
                 geometry: SensorGeometry | None = None, seed: int = 0, render_thread: bool = False,
                 late_frames: bool = False) -> None:
        """Set up the sensors of `scenario`.

        Args:
            scenario: the scenario to step.
            streams: rate and noise per output stream (default: `default_streams`).
            geometry: image size and LiDAR layout.
            seed: noise and dropout seed.
            render_thread: render the camera on a thread of its own from a copy of the state taken at the sample
                time, so that stepping and the other sensors' deliveries go on meanwhile (the render releases
                Python's GIL for most of its time; MuJoCo's ray casts do not, so the LiDARs stay in the stepping
                thread); the frame is delivered at the same simulated time as without (its latency after the
                sample, waiting for the render if need be), from the same state (its noise is drawn at delivery, in
                simulation order). For real-time use; the GL context then lives in that thread.
            late_frames: with `render_thread`, a camera frame whose render has not finished when it is due is
                delivered later, by the first call after it has (still stamped at its sample time), instead of
                holding up every other stream until it is (`late_frame_count` counts them). For real time: a slow
                render must not make the LiDAR late (the corrector reacts to it); the delivery order then depends
                on the render's timing.
        """
        self.sc = scenario
        self.streams = {k: v for k, v in (streams or default_streams(scenario.name)).items() if v.rate_hz > 0}
        unknown = set(self.streams) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown streams {sorted(unknown)}; known: {STREAMS}")
        self.geometry = geometry or SensorGeometry()
        self.rng = np.random.default_rng(seed + 7919)
        self._rigs = [self._make_rig(prefix, view, only) for prefix, view, only in scenario.rigs()]
        self._rig = {rig.prefix: rig for rig in self._rigs}
        # one schedule entry per (robot, stream): "odom" for a one-robot scenario, "robot1/odom" in a fleet
        self._keys = {_key(rig.prefix, name): (rig, name) for rig in self._rigs for name in rig.streams}
        self.dropped: dict[str, int] = dict.fromkeys(self._keys, 0)
        cameras = [rig.camera for rig in self._rigs if rig.camera is not None]
        self._renderer = (ThreadPoolExecutor(1, thread_name_prefix="sim_render", initializer=_below_caller,
                                             initargs=(os.sched_getscheduler(0), os.sched_getparam(0)))
                          if render_thread and cameras else None)
        self._late_frames = late_frames and self._renderer is not None
        self._rendering: list[SimOutput] = []  # frames due but not yet rendered (late_frames)
        self.late_frame_count = 0
        self._delay = DelayLine()
        self.reset_schedule()

    def _make_rig(self, prefix: str, view: Any, only: tuple[str, ...] | None) -> _Rig:
        """The sensors of one robot for the configured streams it has (`only`: the streams it may have)."""
        g, m = self.geometry, self.sc.model
        streams = {k: v for k, v in self.streams.items() if only is None or k in only}
        rig = _Rig(prefix, view, streams)
        if "rgbd" in streams:
            rig.camera = RgbdCamera(m, view.camera, g.width, g.height, g.max_depth)
        if view.lidar_body:
            exclude = view.lidar_exclude_body
            if "lidar" in streams:
                rig.lidar = Lidar(m, view.lidar_body, g.lidar_rings, g.lidar_horizontal, g.lidar_min_elev_deg,
                                  g.lidar_max_elev_deg, range_max=g.lidar_range_max, exclude_body=exclude)
            if "scan" in streams:
                rig.scanner = Lidar(m, view.lidar_body, 1, g.scan_beams, range_max=g.scan_range_max,
                                    exclude_body=exclude)
        else:
            streams.pop("lidar", None)
            streams.pop("scan", None)
        if "tactile" in streams:
            rig.tactile = TactilePads(m, ["pad_left", "pad_right"])
        if "odom" in streams and view.odometry() is None:
            del streams["odom"]
        return rig

    def robots(self) -> list[tuple[str, Any, tuple[str, ...]]]:
        """(namespace, robot view, streams it delivers) per sensor rig; one robot: [("", scenario, ...)]."""
        return [(rig.prefix, rig.view, tuple(rig.streams)) for rig in self._rigs]

    def reset_schedule(self) -> None:
        """Restart sampling from the scenario's current time (after a reset)."""
        now = self.sc.time_ns
        self._next = dict.fromkeys(self._keys, now)
        self._period = {k: round(NS / rig.streams[name].rate_hz) for k, (rig, name) in self._keys.items()}
        self._delay.clear()
        self._rendering.clear()

    def advance(self, duration_s: float, sample_end: bool = True) -> list[SimOutput]:
        """Step physics for `duration_s` (whole steps), sampling due streams; return delivered outputs.

        Args:
            duration_s: simulated time to advance [s].
            sample_end: also sample the streams due at the final time. False leaves that to `sample_due()`, so that a
                real-time caller can deliver what is due at that time (measured earlier, e.g. a LiDAR frame after its
                latency) before the costly measurements taken then (raycasts, renders).
        """
        sc = self.sc
        dt_ns = sc.timestep * NS
        end = sc.time_ns + round(duration_s * NS)
        out: list[SimOutput] = []
        while True:
            now = sc.time_ns
            if now >= end - dt_ns / 2:
                out += self._pop_ready(now)
                if sample_end:
                    out += self.sample_due()
                return out
            out += self.sample_due()
            target = min(min(self._next.values(), default=end), end)
            sc.step(max(1, math.ceil((target - now) / dt_ns - 1e-6)))

    def sample_due(self) -> list[SimOutput]:
        """Sample the streams due at the current time; return the outputs delivered now (those without latency)."""
        now = self.sc.time_ns
        for name, due in self._next.items():
            if now >= due:
                self._sample(name, now)
                self._next[name] = max(due + self._period[name], now + 1)
        return self._pop_ready(now)

    def _pop_ready(self, now: int) -> list[SimOutput]:
        """Outputs due at `now`, with camera frames rendered on the render thread finished.

        A frame still rendering is waited for, unless `late_frames`: then it waits in `_rendering` and comes out
        first once rendered.
        """
        out = self._delay.pop_ready(now)
        if self._late_frames:
            waiting, now_out = [], []
            for o in self._rendering:  # older frames first
                (now_out if o.data.done() else waiting).append(o)
            for o in out:
                if isinstance(o.data, Future) and not o.data.done():
                    waiting.append(o)
                    self.late_frame_count += 1
                else:
                    now_out.append(o)
            self._rendering, out = waiting, now_out
        for o in out:
            if isinstance(o.data, Future):
                rig = self._rig[o.robot]
                o.data = getattr(self, f"_finish_{o.stream}")(rig, o.data.result(), rig.streams[o.stream].noise)
        return out

    def _sample(self, key: str, now: int) -> None:
        rig, name = self._keys[key]
        noise = rig.streams[name].noise
        if noise.dropout > 0 and self.rng.random() < noise.dropout:
            self.dropped[key] += 1
            return
        data = getattr(self, f"_measure_{name}")(rig, noise)
        self._delay.push(now + round(noise.latency_s * NS), SimOutput(name, now, data, rig.prefix))

    # ---- measurements ---------------------------------------------------------------------------------------
    def _measure_joint_states(self, rig: _Rig, noise: SensorNoise) -> tuple:
        names, pos, vel, eff = rig.view.joint_state()
        if noise.sigma > 0:
            pos = pos + noise.sigma * self.rng.standard_normal(pos.shape)
        return names, pos, vel, eff

    def _measure_odom(self, rig: _Rig, noise: SensorNoise) -> tuple:
        T, twist = rig.view.odometry()
        if noise.sigma > 0:
            twist = twist + noise.sigma * self.rng.standard_normal(6) * np.array([1, 1, 0, 0, 0, 1])
        return T, twist

    def _measure_tf(self, rig: _Rig, noise: SensorNoise) -> list:
        return rig.view.frames()[1]

    def _measure_rgbd(self, rig: _Rig, noise: SensorNoise) -> tuple | Future:
        if self._renderer is not None:  # noise is added when delivered (_pop_ready), in simulation order
            return self._renderer.submit(rig.camera.render, copy.copy(self.sc.data))
        return self._finish_rgbd(rig, rig.camera.render(self.sc.data), noise)

    def _finish_rgbd(self, rig: _Rig, rendered: tuple[np.ndarray, np.ndarray], noise: SensorNoise) -> tuple:
        rgb, depth = rendered
        # colour noise in intensity levels, depth noise sigma * z^2 [m]
        return add_rgb_noise(rgb, SensorNoise(sigma=noise.sigma * 100.0), self.rng), \
            add_depth_noise(depth, noise, self.rng), rig.camera.K

    def _measure_lidar(self, rig: _Rig, noise: SensorNoise) -> dict[str, np.ndarray]:
        return rig.lidar.scan(self.sc.data, noise, self.rng)

    def _measure_scan(self, rig: _Rig, noise: SensorNoise) -> np.ndarray:
        return noisy_ranges(rig.scanner.cast(self.sc.data), noise, self.rng).astype(np.float32)

    def _measure_tactile(self, rig: _Rig, noise: SensorNoise) -> list:
        pads = rig.tactile.read(self.sc.data)
        if noise.sigma > 0:
            for p in pads:
                p.pressure = np.maximum(p.pressure + noise.sigma * self.rng.standard_normal(p.pressure.shape),
                                        0.0).astype(np.float32)
        return pads

    def _measure_ground_truth(self, rig: _Rig, noise: SensorNoise) -> Any:
        return rig.view.ground_truth()

    def close(self) -> None:
        """Release the renderers (from the thread that rendered)."""
        for rig in self._rigs:
            if rig.camera is None:
                continue
            if self._renderer is not None:
                self._renderer.submit(rig.camera.close).result()
            else:
                rig.camera.close()
        if self._renderer is not None:
            self._renderer.shutdown()


def _key(prefix: str, stream: str) -> str:
    return f"{prefix}/{stream}" if prefix else stream
