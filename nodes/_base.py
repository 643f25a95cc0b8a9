"""Conventions shared by every node: validated parameters, QoS, diagnostics, clean shutdown.

Every node in this package subclasses `PhysaiNode` and starts through `run_node`, so that:
- parameters are declared with a description (unit included) and a range, and loaded from `config/*.yaml`
  (`--ros-args --params-file`); an out-of-range value is refused by rclpy with the range in the message;
- every subscription callback gets only messages that passed the shared validation layer
  (`physical_ai.validation`: stamps, sizes, finite values, ranges, frame ids); a bad message is dropped and
  counted as `invalid:<topic>:<reason>`, and an exception in any subscription or timer callback is caught,
  logged and counted as `callback_error:<topic or timer>`, so nothing a peer sends can end the node's spin;
- sensor inputs use the sensor-data QoS, commands are reliable with depth 1, and a QoS mismatch on any
  endpoint is logged and counted, never silent;
- `/diagnostics` carries rates, latencies and drop counters at 1 Hz;
- SIGINT shuts the node down cleanly; time comes from the node clock, so `use_sim_time` works.
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

from physical_ai.bringup import security
from physical_ai.memory import keep_large_buffers
from physical_ai.stats import RateMeter, RollingStats
from physical_ai.validation import LIMIT_PARAMETERS, InputLimits, Invalid, check

SENSOR_QOS = qos_profile_sensor_data
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)


SIGNAL_POLL_S = 0.1  # longest a SIGINT/SIGTERM waits for the spin to notice it [s]
DEAF_EXIT_CODE = 3  # a node that hears nothing on topics that have publishers exits with this (`exit_when_deaf`)
TIME_JUMP_BACK_S = 0.1  # a backward step of ROS time larger than this is a reset, not reordering


class PhysaiNode(Node):
    """A node with the project's conventions. Subclasses declare parameters with `param`."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        # before Node.__init__, which subscribes to /clock under use_sim_time
        self._received: dict[str, int] = {}  # messages taken per subscribed topic (resolved name), before validation
        super().__init__(name, **kwargs)
        self._diag_lock = threading.Lock()
        self.exit_code: int | None = None     # set to end `run_node`'s spin with this exit code
        self._counters: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}  # log_throttled: monotonic time each key was last logged [s]
        self._rates: dict[str, RateMeter] = {}
        self._latencies: dict[str, RollingStats] = {}
        self._diag_values: dict[str, str] = {}
        self._diag_level = DiagnosticStatus.OK
        self._diag_message = "ok"
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", STATE_QOS)
        period = self.param("diagnostics_period_s", 1.0, "Period of /diagnostics messages [s]", (0.05, 60.0))
        self.create_timer(period, self._publish_diagnostics)
        self.input_limits = InputLimits(**{
            name: self.param(f"input_{name}", getattr(InputLimits, name), description, value_range)
            for name, (description, value_range) in LIMIT_PARAMETERS.items()})
        # ROS time jumping back (a simulator reset, a bag looping) invalidates everything stamped on the old clock.
        self._time_reset_hooks: list[Callable[[], None]] = []
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-TIME_JUMP_BACK_S), on_clock_change=False),
            post_callback=self._on_time_jump)

    # ---- time ---------------------------------------------------------------------------------------------
    def on_time_reset(self, hook: Callable[[], None]) -> None:
        """Call `hook` (on the executor thread that received /clock) whenever ROS time jumps back.

        Nodes forget stamped state there: buffered messages, sensor histories, command references, watchdogs.
        """
        self._time_reset_hooks.append(hook)

    def _on_time_jump(self, jump: TimeJump) -> None:
        self.count("time_jumped_back")
        self.get_logger().info(f"ROS time jumped back by {-jump.delta.nanoseconds * 1e-9:.3f} s: "
                               "forgetting state stamped on the old clock")
        for hook in self._time_reset_hooks:
            hook()

    # ---- parameters -------------------------------------------------------------------------------------
    def param(self, name: str, default: Any, description: str,
              value_range: tuple[float, float] | None = None, read_only: bool = False) -> Any:
        """Declare a parameter with a description and optional inclusive range; return its value."""
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if value_range is not None:
            lo, hi = value_range
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise TypeError(f"parameter {name}: a range needs a numeric default")
            if isinstance(default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                                      step=0.0)]
        value = self.declare_parameter(name, default, descriptor).value
        if value_range is not None and not value_range[0] <= value <= value_range[1]:
            raise ValueError(f"parameter {name}={value} outside [{value_range[0]}, {value_range[1]}]")
        return value

    # ---- guarded callbacks: validation first, no exception out of spin ------------------------------------------
    def create_subscription(self, msg_type: type, topic: str, callback: Callable[..., None], qos_profile: Any,
                            **kwargs: Any) -> Any:
        """`Node.create_subscription` whose callback sees only validated messages and never raises.

        Raw subscriptions (`raw=True`, bytes) skip validation; their callback is still guarded.
        """
        name = self.resolve_topic_name(topic)
        validate = not kwargs.get("raw", False)
        received = self._received
        received.setdefault(name, 0)
        if _takes_message_info(callback):
            def guarded_with_info(*args: Any) -> None:
                # rclpy's EventsExecutor (Kilted) passes (message, info) as one tuple, the others as two arguments
                msg, info = args[0] if len(args) == 1 else args
                received[name] += 1
                if not validate or self._valid(name, msg):
                    self._guarded_call(name, callback, msg, info)
            guarded_with_info.__signature__ = _MESSAGE_AND_INFO  # type: ignore[attr-defined]  # how rclpy tells
            return super().create_subscription(msg_type, topic, guarded_with_info, qos_profile, **kwargs)

        def guarded(msg: Any) -> None:
            received[name] += 1
            if not validate or self._valid(name, msg):
                self._guarded_call(name, callback, msg)
        return super().create_subscription(msg_type, topic, guarded, qos_profile, **kwargs)

    def create_timer(self, timer_period_sec: float, callback: Callable[[], None], *args: Any, **kwargs: Any) -> Any:
        """`Node.create_timer` whose callback never raises out of spin (errors are counted and logged)."""
        where = f"timer:{getattr(callback, '__name__', 'callback')}"
        return super().create_timer(timer_period_sec, lambda: self._guarded_call(where, callback), *args, **kwargs)

    def _valid(self, topic: str, msg: Any) -> bool:
        try:
            bad = check(msg, self.input_limits)
        except Exception as exc:  # a message type the walk does not know how to read is dropped, not fatal
            bad = Invalid("unreadable", repr(exc))
        if bad is None:
            return True
        key = f"invalid:{topic}:{bad.reason}"
        self.count(key)
        self.log_throttled(key, f"dropped a message on {topic}: {bad.reason}: {bad.detail}")
        return False

    def _guarded_call(self, where: str, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # one bad input must not end the node; SystemExit/KeyboardInterrupt still do
            key = f"callback_error:{where}"
            self.count(key)
            with self._diag_lock:
                self._diag_values["last_callback_error"] = f"{where}: {exc!r}"[:200]
            self.log_throttled(key, f"callback on {where} failed (message dropped): {exc!r}\n"
                               f"{traceback.format_exc(limit=-3)}", level="error")

    def exit_when_deaf(self, topics: list[str], silence_s: float) -> None:
        """End the node with DEAF_EXIT_CODE when `topics` never deliver for `silence_s` while one has a publisher.

        Its supervisor (or launch's respawn) then restarts it. A perception node respawned after a SIGKILL, with
        Fast DDS logging "Failed init_port ...: open_and_lock_file failed", was discovered by its peers and yet
        received nothing, for good (we believe its shared-memory port failed and large messages do not survive the
        UDP fallback). Silence is measured on the node clock, so a paused simulator is not silence; but a node on sim
        time that has never heard /clock although /clock has a publisher is as deaf, and its clock stands at 0, so
        then the steady clock measures it (a respawn in CI heard nothing, /clock included, for 90 s). `silence_s`
        <= 0 disables the check.
        """
        if silence_s <= 0:
            return
        names = [self.resolve_topic_name(t) for t in topics]
        state = {"since": 0, "published": False}

        def check() -> None:
            if any(self._received.get(n, 0) for n in names):
                return  # it hears: later silence is the sensors' (a driver stalled, a fuzzer done), not deafness
            now = self.get_clock().now().nanoseconds
            if now == 0 and self.count_publishers("/clock"):
                now = time.monotonic_ns()
            published = any(self.count_publishers(n) for n in names)
            # silence counts from the first check that saw a publisher, never from before one appeared
            if now < state["since"] or not (published and state["published"]):
                state.update(since=now, published=published)
                return
            if now - state["since"] >= silence_s * 1e9 and self.exit_code is None:
                self.get_logger().error(
                    f"no message on {', '.join(names)} for {silence_s:.1f} s although they have publishers: this "
                    f"participant hears nothing; exiting with code {DEAF_EXIT_CODE} to be restarted")
                self.exit_code = DEAF_EXIT_CODE
        # checked on the steady clock: a timer on sim time never fires while /clock is not heard
        self.create_timer(min(1.0, silence_s / 4), check, clock=Clock(clock_type=ClockType.STEADY_TIME))

    # ---- QoS-checked endpoints ----------------------------------------------------------------------------
    def sensor_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QoSProfile = SENSOR_QOS) -> Any:
        """Subscribe with sensor-data QoS (best effort, small depth) and QoS mismatch reporting."""
        return self.create_subscription(
            msg_type, topic, callback, qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._qos_event_handler(topic)))

    def checked_publisher(self, msg_type: type, topic: str, qos: QoSProfile = STATE_QOS) -> Any:
        """Create a publisher whose QoS mismatches are logged and counted."""
        return self.create_publisher(
            msg_type, topic, qos,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._qos_event_handler(topic)))

    def _qos_event_handler(self, topic: str) -> Callable[[Any], None]:
        def on_incompatible(event: Any) -> None:
            self.count(f"qos_incompatible:{topic}")
            self.get_logger().error(
                f"QoS incompatible on {topic}: policy {event.last_policy_kind} "
                f"(total {event.total_count}); check reliability/durability of the other side")
        return on_incompatible

    # ---- diagnostics ----------------------------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        """Increment a named counter shown in /diagnostics (drops, rejects, errors)."""
        with self._diag_lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def log_throttled(self, key: str, text: str, period_s: float = 2.0, level: str = "warning") -> None:
        """Log `text` at `level` at most once per `period_s` per `key` (e.g. the counter of what went wrong).

        rclpy's `throttle_duration_sec` costs ~1 ms a call even when it suppresses the message (it finds its caller
        with `inspect`, which reads the source file): bad input logged that way costs a core, and a node waiting for
        its first input (checked at 100 Hz) a few percent of one.
        """
        now = time.monotonic()
        with self._diag_lock:
            if now - self._logged_at.get(key, -float("inf")) < period_s:
                return
            self._logged_at[key] = now
        # rclpy pins a severity to each calling line ("Logger severity cannot be changed between calls"): one
        # line per level.
        if level == "error":
            self.get_logger().error(text)
        elif level == "warning":
            self.get_logger().warning(text)
        else:
            raise ValueError(f"log_throttled: level must be 'warning' or 'error', got {level!r}")

    def counter(self, key: str) -> int:
        """Current value of a counter."""
        with self._diag_lock:
            return self._counters.get(key, 0)

    def tick(self, key: str) -> None:
        """Record one event of a stream whose rate is shown in /diagnostics."""
        with self._diag_lock:
            self._rates.setdefault(key, RateMeter()).tick()

    def latency(self, key: str, ms: float) -> None:
        """Record a latency sample [ms]; p50/p99 are shown in /diagnostics."""
        with self._diag_lock:
            self._latencies.setdefault(key, RollingStats(500)).add(ms)

    def set_status(self, level: int, message: str, **values: Any) -> None:
        """Set the overall diagnostic level (DiagnosticStatus.OK/WARN/ERROR/STALE), message and extra values."""
        with self._diag_lock:
            self._diag_level = level
            self._diag_message = message
            self._diag_values.update({k: str(v) for k, v in values.items()})

    def diagnostic_status(self) -> DiagnosticStatus:
        """Return the node's status as it will appear on /diagnostics."""
        with self._diag_lock:
            values = [KeyValue(key=f"count.{k}", value=str(v)) for k, v in sorted(self._counters.items())]
            values += [KeyValue(key=f"rate_hz.{k}", value=f"{m.rate_hz():.2f}") for k, m in sorted(self._rates.items())]
            for k, stats in sorted(self._latencies.items()):
                values.append(KeyValue(key=f"latency_ms.{k}.p50", value=f"{stats.percentile(50):.3f}"))
                values.append(KeyValue(key=f"latency_ms.{k}.p99", value=f"{stats.percentile(99):.3f}"))
            values += [KeyValue(key=k, value=v) for k, v in sorted(self._diag_values.items())]
            return DiagnosticStatus(level=self._diag_level, name=self.get_fully_qualified_name(),
                                    message=self._diag_message, hardware_id=self.get_name(), values=values)

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self._diag_pub.publish(msg)


_MESSAGE_AND_INFO = inspect.Signature([inspect.Parameter("msg", inspect.Parameter.POSITIONAL_ONLY),
                                       inspect.Parameter("info", inspect.Parameter.POSITIONAL_ONLY)])


def _takes_message_info(callback: Callable[..., None]) -> bool:
    """True for a subscription callback of two arguments (message, MessageInfo), as rclpy decides it."""
    try:
        inspect.signature(callback).bind(object())
        return False
    except TypeError:
        return True


def resolve_share_path(path: str | Path) -> Path:
    """A path as given when absolute, else relative to the package's share dir (installed) or the source checkout."""
    path = Path(path)
    if path.is_absolute():
        return path
    from physical_ai.bringup.stack import share_dir

    try:
        return share_dir() / path
    except (OSError, FileNotFoundError):  # ament index without AMENT_PREFIX_PATH raises OSError
        return Path(__file__).resolve().parents[1] / path


def shipped_fastdds_profile() -> Path | None:
    """The package's config/fastdds.xml: from the installed share directory when there is one, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("physical_ai_stack")) / "config" / "fastdds.xml"
        if installed.is_file():
            return installed
    except (ImportError, LookupError, OSError, ValueError):  # no ament index (plain venv) or package not indexed
        pass
    source = Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"
    return source if source.is_file() else None


def use_shipped_fastdds_profile() -> None:
    """Point Fast DDS at the shipped profile (shared memory sized for images and clouds) unless the user chose one.

    Must run before the first participant is created, i.e. before `rclpy.init`.
    """
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
        profile = shipped_fastdds_profile()
        if profile is not None:
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)


def make_executor(threads: int = 1, events: bool = False) -> Executor:
    """The executor a node spins in: rclpy's C++ events executor (`events`), or `threads` Python threads.

    The events executor dispatches each message without rebuilding a wait set in Python: a fraction of the
    per-callback CPU of SingleThreadedExecutor (the recorder's ~500 callbacks/s at the AMR's rates).
    """
    if events:
        return EventsExecutor()
    return MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None, threads: int = 1,
             events_executor: bool = False) -> None:
    """Initialise rclpy (with the shipped Fast DDS profile), spin the node until SIGINT or shutdown, and clean up.

    `threads`, `events_executor`: the executor (`make_executor`).

    SIGINT and SIGTERM stop the spin with the context still up, so `on_shutdown` can still publish (the
    corrector's final safe command): rclpy's own handlers would shut the context down first, and nothing could be
    sent any more. The spin wakes every SIGNAL_POLL_S to let a signal through (the events executor's spin() also
    kept running after a SIGINT had shut rclpy down).

    Ctrl-C in a terminal running `ros2 launch` reaches a node twice: the terminal's SIGINT, then launch's forwarded
    one. Once stopping, further SIGINTs are ignored, so the second cannot interrupt the clean-up (the safe command,
    closing a recording) with a KeyboardInterrupt; a second SIGTERM still ends a node whose clean-up hangs.
    """
    use_shipped_fastdds_profile()
    security.apply_defaults()  # discovery on localhost unless the environment chose a range
    problem = security.check_environment()
    if problem:
        raise SystemExit(problem)
    keep_large_buffers()  # reuse heap pages for image/cloud-sized messages instead of fresh mmaps
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    # While the node is built (imports, model loading) a signal interrupts at once; once it spins the handlers only
    # set a flag: an exception raised at an arbitrary point (inside rclpy taking a message) would come out as an
    # unrelated RuntimeError.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop = threading.Event()
    node = None
    try:
        node = node_factory()
        executor = make_executor(threads, events_executor)
        executor.add_node(node)
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        while rclpy.ok() and not stop.is_set() and getattr(node, "exit_code", None) is None:
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # a second signal (launch's and the terminal's, a supervisor's repeat) must not cut the clean-up short: the
        # corrector's final stop, the recorder's file end; a process stuck here still gets SIGKILL
        _ignore_sigint()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            on_shutdown = getattr(node, "on_shutdown", None)
            if on_shutdown is not None:
                on_shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_sigint()  # rclpy's shutdown put back the handler it found at init
    if getattr(node, "exit_code", None) is not None:
        raise SystemExit(node.exit_code)


def _ignore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
