"""AMR correction: velocity commands checked by a footprint sweep, then slowed, steered, stopped or re-routed.

Inputs are the policy's velocity chunks or any planner's cmd_vel, LiDAR points and tracked obstacles with their
predicted motion. Each cycle takes the nominal command (latest chunk sample or cmd_vel, or the detour route while
one is active), sweeps the footprint along it and along slower versions of it, and keeps the fastest one that can
still stop before anything (base deceleration, reaction time). If only stopping is safe the path is blocked:
steering candidates are tried, and a detour is planned on the occupancy grid (obstacles stamped in) towards the
goal, or towards where the nominal command was heading. The detour is dropped as soon as the nominal path is clear
again. Velocity and acceleration limits of the base are applied last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from physical_ai.control.chunks import ChunkCheck, ChunkPolicy, Reference, check_chunk
from physical_ai.control.flags import Flag
from physical_ai.control.footprint import Footprint, bin_points, sweep
from physical_ai.control.grid_planner import Grid, aligned_grid, coarsen, plan, stamp_obstacles

NAMES = ("linear_x", "angular_z")
_APPROACH_TURN_GAIN = 1.5  # final approach to a goal: turn rate per heading error [1/s]


@dataclasses.dataclass(frozen=True)
class AmrConfig:
    """AMR limits and tuning (SI units)."""

    footprint: Footprint = dataclasses.field(default_factory=Footprint)
    clearance_m: float = 0.3
    max_linear: float = 1.0
    max_angular: float = 1.5
    max_linear_acc: float = 1.0
    max_angular_acc: float = 2.0
    horizon_s: float = 2.0
    samples: int = 21
    reaction_s: float = 0.1
    cell_m: float = 0.1
    speed_scales: tuple[float, ...] = (1.0, 0.75, 0.5, 0.3, 0.15, 0.05)
    steer_offsets: tuple[float, ...] = (0.4, -0.4, 0.8, -0.8, 1.2, -1.2)
    lookahead_m: float = 0.8
    local_goal_m: float = 4.0
    resume_s: float = 0.5
    detour_min_speed_mps: float = 0.05  # a nominal command slower than this drives nowhere: no detour for it
    # With a goal set (set_goal), the nominal speed is capped to what stops the base at it, braking at
    # goal_decel_mps2 (below max_linear_acc, so the ramp can follow), and the base stops within goal_tolerance_m.
    # Within goal_approach_m the base steers to the goal itself, checked up to the goal against the LiDAR points and
    # the moving tracks.
    goal_tolerance_m: float = 0.2
    goal_decel_mps2: float = 0.5
    goal_approach_m: float = 1.2
    # A path blocked by something moving faster than this is waited out (stop), not steered around or re-planned:
    # a crossing person clears the path by itself, a detour into its way does not.
    yield_speed_mps: float = 0.3
    # A "moving" blocker that has not cleared the path after this long is handled like a standing one (steer,
    # re-plan): a crossing worker clears the path in seconds; a track whose velocity estimate jitters above
    # yield_speed_mps (a person standing in the aisle, a shelf end) would otherwise hold the base for good.
    yield_timeout_s: float = 6.0
    give_way_hold_s: float = 0.5  # once moving out of a worker's way, keep at it this long [s]
    # The base crosses a moving obstacle's path only if it is out of it this long before the obstacle gets there:
    # each one is swept as the corridor it walks over this time, not as a disc. Without it a worker crossing the
    # aisle came into the 2 s sweep only when the base could no longer stop short of the worker's lane [s].
    moving_headway_s: float = 1.0
    # A free sweep is to mean a safe stop remains (it ends at rest), and a stop inside a walker's path is none: where
    # it ends, the base stands on for this long against what moves faster than yield_speed_mps [s].
    rest_check_s: float = 2.0
    max_age_s: float = 0.5
    max_future_s: float = 0.5
    period_s: float = 0.01


# One definition of each corrector setting as a `trajectory_correction` parameter (AMR): description with unit, and
# allowed range; the defaults are AmrConfig's (footprint_* its footprint's). Read by the node and by `amr_config`.
AMR_PARAMETERS: dict[str, tuple[str, tuple[float, float]]] = {
    "footprint_length": ("Base length [m]", (0.05, 5.0)),
    "footprint_width": ("Base width [m]", (0.05, 5.0)),
    "clearance_m": ("Clearance kept to obstacles [m]", (0.0, 3.0)),
    "max_linear": ("Speed limit [m/s]", (0.0, 10.0)),
    "max_angular": ("Turn rate limit [rad/s]", (0.0, 10.0)),
    "max_linear_acc": ("Acceleration limit [m/s^2]", (0.01, 20.0)),
    "max_angular_acc": ("Angular acceleration limit [rad/s^2]", (0.01, 50.0)),
    "horizon_s": ("Collision look-ahead [s]", (0.2, 10.0)),
    "reaction_s": ("Reaction time added to stopping [s]", (0.0, 2.0)),
    "yield_speed_mps": ("A path blocked by something moving faster than this is waited out, not steered around "
                        "[m/s]", (0.0, 10.0)),
    "yield_timeout_s": ("A moving blocker still in the path after this long is steered around or re-planned past "
                        "like a standing one [s]", (0.5, 120.0)),
    "moving_headway_s": ("The base crosses a moving obstacle's path only if it is out of it this long before the "
                         "obstacle gets there [s]", (0.0, 5.0)),
    "rest_check_s": ("A motion is free only if where it ends at rest nothing moving reaches the base within this "
                     "long after the look-ahead [s]", (0.0, 10.0)),
    "goal_tolerance_m": ("With a goal (goal_topic), the base stops within this distance of it [m]", (0.01, 5.0)),
    "goal_decel_mps2": ("With a goal, the speed is capped to stop at it braking at this rate (below "
                        "max_linear_acc) [m/s^2]", (0.01, 20.0)),
    "goal_approach_m": ("Within this distance of a goal the base turns to it and drives there itself (obstacle "
                        "checks still apply) [m]", (0.0, 5.0)),
}


def amr_parameter_default(name: str) -> float:
    """The default of one of `AMR_PARAMETERS`: AmrConfig's value."""
    config = AmrConfig()
    if name.startswith("footprint_"):
        return float(getattr(config.footprint, name.removeprefix("footprint_")))
    return float(getattr(config, name))


def amr_config(params: Mapping[str, Any], period_s: float | None = None) -> AmrConfig:
    """The corrector's configuration from its `trajectory_correction` parameters (config/amr.yaml).

    Defaults fill what the parameters leave out; `period_s` defaults to 1 / `rate_hz`.
    """
    values = {name: float(params.get(name, amr_parameter_default(name))) for name in AMR_PARAMETERS}
    footprint = Footprint(values.pop("footprint_length"), values.pop("footprint_width"))
    if period_s is None:
        period_s = 1.0 / float(params.get("rate_hz", 1.0 / AmrConfig().period_s))
    return AmrConfig(footprint=footprint, period_s=period_s, **values)


def in_swept_path(config: AmrConfig, v: float, w: float, centres: np.ndarray, radii: np.ndarray,
                  start: tuple[float, float] | None = None) -> bool:
    """Whether any standing disc (robot frame) lies in the path the corrector sweeps for the command (v, w).

    The motion is the one the corrector checks its nominal command against: ramp from the present motion `start`
    (default: (v, w) itself) to (v, w) at the acceleration limits, hold it, then brake to rest by the end of the
    look-ahead; "in the path" is coming within `clearance_m` of the footprint on it. The corrector itself adds
    margins to this (sampling, room to turn on the spot), so what lies in this path is in its sweep too: it is the
    definition of "in the path, needs a reaction now" that the run monitor scores reactions against on ground truth.
    """
    c = config
    centres = np.asarray(centres, float).reshape(-1, 2)
    if centres.shape[0] == 0:
        return False
    times = np.linspace(0.0, c.horizon_s, c.samples)
    t_hit, _ = sweep(c.footprint, np.array([v]), np.array([w]), times, np.zeros((0, 2)), 0.0,
                     (centres, np.asarray(radii, float).reshape(-1), np.zeros_like(centres)), c.clearance_m,
                     (*(start or (v, w)), c.max_linear_acc, c.max_angular_acc))
    return bool(np.isfinite(t_hit[0]))


@dataclasses.dataclass
class AmrCommand:
    """One cycle's base command and why it differs from the nominal one."""

    linear: float
    angular: float
    flags: int
    reasons: list[str]
    speed_scale: float
    min_clearance_m: float
    time_to_collision_s: float


def _to_robot(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Odom-frame points (N, 2) into the robot frame of pose (x, y, yaw)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(xy) - pose[:2]
    return np.column_stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]))


def _to_odom(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose[2]), np.sin(pose[2])
    xy = np.asarray(xy)
    return np.column_stack((pose[0] + c * xy[:, 0] - s * xy[:, 1], pose[1] + s * xy[:, 0] + c * xy[:, 1]))


class AmrCorrector:
    """Velocity commands for a differential-drive base, corrected against obstacles and limits."""

    def __init__(self, config: AmrConfig) -> None:
        self.config = config
        c = config
        self._policy = ChunkPolicy(NAMES, np.array([-c.max_linear, -c.max_angular]),
                                   np.array([c.max_linear, c.max_angular]), c.max_age_s, c.max_future_s)
        self._times = np.linspace(0.0, c.horizon_s, c.samples)
        # Between two samples the footprint's surface moves at most this far: inflate so no contact hides there.
        self._sample_margin = 0.5 * (self._times[1] - self._times[0]) * (c.max_linear + c.max_angular
                                                                          * c.footprint.radius)
        self._reach = c.max_linear * c.horizon_s + c.footprint.radius + c.clearance_m + 0.5
        self._ref: Reference | None = None
        self._ref_time = -np.inf
        self._cmd_vel: tuple[float, float, float] | None = None  # (v, w, received at)
        self._last_start: float | None = None
        self._cells = np.zeros((0, 2))
        self._cell_pad = 0.0
        self._obstacles = (np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
        self._swept = self._obstacles  # with the corridors of moving obstacles (moving_headway_s)
        self._movers = self._obstacles  # the moving ones (rest_check_s)
        self._swept_movers = self._obstacles  # the moving ones with their corridors
        self._walkers = self._obstacles  # the moving ones perception classed as people
        self._pose: np.ndarray | None = None
        self._grid: tuple[Grid, tuple[float, float, float]] | None = None  # the grid, its corner's pose in odom
        self._grid_in_odom: Grid | None = None  # that grid turned into odom, once a detour is planned on it
        self._goal: np.ndarray | None = None
        self._route: np.ndarray | None = None
        self._clear_since: float | None = None
        self._waiting_since: float | None = None  # when the current wait for a moving blocker began
        self._blocked_at = -np.inf  # last cycle whose nominal path was blocked
        self._giving_way_until = -np.inf
        self._out = np.zeros(2)
        self.replans = 0
        self._candidates(np.zeros(1), np.zeros(1))  # compiles (or loads) the sweep kernel now, not in the loop

    # ---- inputs -------------------------------------------------------------------------------------------------
    def submit_chunk(self, names: Sequence[str], values: np.ndarray, start_s: float, dt: float, horizon: int,
                     now_s: float) -> ChunkCheck:
        """A velocity chunk (linear_x, angular_z); accepted chunks become the nominal command."""
        check = check_chunk(self._policy, names, values, start_s, dt, horizon, now_s, self._last_start)
        if check.reference is not None:
            self._ref, self._ref_time = check.reference, now_s
            self._last_start = check.reference.start
        return check

    def restart_clock(self) -> None:
        """Forget commands timed on the old clock (ROS time jumped back): the base stops until a new one arrives."""
        self._ref, self._ref_time, self._cmd_vel, self._last_start = None, -np.inf, None, None
        self._route, self._clear_since, self._waiting_since, self._blocked_at = None, None, None, -np.inf
        self._giving_way_until = -np.inf

    def submit_cmd_vel(self, linear: float, angular: float, now_s: float) -> list[str]:
        """A planner's command; the most recent of chunk and cmd_vel is the nominal. Returns reasons (empty=ok)."""
        if not (np.isfinite(linear) and np.isfinite(angular)):
            return ["rejected: NaN/inf in cmd_vel"]
        c = self.config
        reasons = []
        clamped = (float(np.clip(linear, -c.max_linear, c.max_linear)),
                   float(np.clip(angular, -c.max_angular, c.max_angular)))
        if clamped != (linear, angular):
            reasons.append("clamped cmd_vel to base limits")
        self._cmd_vel = (*clamped, now_s)
        return reasons

    @property
    def reach(self) -> float:
        """Distance from the robot [m] beyond which nothing can touch a swept footprint within the horizon."""
        return self._reach

    def set_points(self, xy: np.ndarray) -> None:
        """Raw LiDAR points (N, 2) in the robot frame, already cut to the height band that can hit the base."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        self._cells, self._cell_pad = bin_points(xy, self._reach, self.config.cell_m)

    def set_obstacles(self, centres: np.ndarray, radii: np.ndarray, velocities: np.ndarray,
                      people: np.ndarray | None = None) -> None:
        """Tracked obstacles in the robot frame: centres (M, 2), radii (M,), velocities (M, 2) [m/s].

        `people` (M,) marks the ones perception classed as a person (None: none is); see `_stop_or_give_way`.
        """
        centres = np.asarray(centres, float).reshape(-1, 2)
        radii = np.asarray(radii, float).reshape(-1)
        velocities = np.asarray(velocities, float).reshape(-1, 2)
        people = np.zeros(len(radii), bool) if people is None else np.asarray(people, bool).reshape(-1)
        ok = np.all(np.isfinite(centres), axis=1) & np.isfinite(radii) & np.all(np.isfinite(velocities), axis=1)
        centres, radii, velocities, people = centres[ok], np.maximum(radii[ok], 0.0), velocities[ok], people[ok]
        # What comes up behind the base along its heading is following traffic (another robot in the lane): as on a
        # road, keeping the distance is the follower's duty, so it counts as standing where it is (backing into it
        # is still a hit). Extrapolated into the base, it sent a leader off its lane and then turning around
        # (in-process fleet, seed 200001).
        following = (centres[:, 0] < -self.config.footprint.length / 2) & (velocities[:, 0] > np.abs(velocities[:, 1]))
        velocities = np.where(following[:, None], 0.0, velocities)
        self._obstacles = (centres, radii, velocities)
        self._swept = self._corridors(*self._obstacles)
        moving = self._moving(velocities)
        self._movers = tuple(part[moving] for part in self._obstacles)
        self._walkers = tuple(part[moving & people] for part in self._obstacles)
        # _swept holds the obstacles, then their corridors' copies (all of movers): keep the movers and the copies
        keep = np.concatenate([moving, np.ones(len(self._swept[1]) - len(radii), dtype=bool)])
        self._swept_movers = tuple(part[keep] for part in self._swept)

    def _corridors(self, centres: np.ndarray, radii: np.ndarray, velocities: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Obstacles plus copies of each moving one up to `moving_headway_s` ahead along its motion.

        The obstacles come first, in their order, then the copies. The copies overlap (spaced 1.5 radii), so the
        corridor has no gap the footprint could be swept through. Only the part of a corridor within the sweep's
        reach of the robot gets copies: the work per obstacle is bounded by that reach whatever its speed (an
        obstacle reported at 1e5 m/s made 10^6 discs for one cycle).
        """
        c = self.config
        speed = np.hypot(velocities[:, 0], velocities[:, 1])
        moving = np.flatnonzero(self._moving(velocities))
        if c.moving_headway_s <= 0 or moving.size == 0:
            return centres, radii, velocities
        extra = [centres], [radii], [velocities]
        for i in moving:
            # times t in (0, headway] at which the copy centres[i] + velocities[i] * t is within reach + radius
            u = velocities[i] / speed[i]
            along = float(centres[i] @ u)
            half2 = along ** 2 - float(centres[i] @ centres[i]) + (self._reach + radii[i]) ** 2
            if half2 < 0.0:
                continue
            d0 = max(-along - np.sqrt(half2), 0.0)
            d1 = min(-along + np.sqrt(half2), speed[i] * c.moving_headway_s)
            if d1 <= d0:
                continue
            n = int(np.ceil((d1 - d0) / max(1.5 * radii[i], 0.05))) + 1
            dt = np.linspace(max(d0, 1e-9), d1, n) / speed[i]
            extra[0].append(centres[i] + velocities[i] * dt[:, None])
            extra[1].append(np.full(n, radii[i]))
            extra[2].append(np.tile(velocities[i], (n, 1)))
        return tuple(np.concatenate(parts) for parts in extra)

    def set_pose(self, x: float, y: float, yaw: float) -> None:
        """Robot pose in the odom frame (from odometry)."""
        if np.isfinite(x) and np.isfinite(y) and np.isfinite(yaw):
            self._pose = np.array([x, y, yaw])

    def set_grid(self, grid: Grid, pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """Occupancy grid, axis-aligned in a frame at `pose` (x, y, yaw) in odom (default: odom itself).

        A turned grid (a robot-centred perception grid, in base_link) is turned into odom only when a detour is
        planned on it (`aligned_grid`): at 10 Hz, every grid turned on arrival cost the corrector 2 % of a core.
        """
        self._grid = (grid, pose)
        self._grid_in_odom = None

    def _turned_grid(self) -> Grid | None:
        """The grid set, in odom, at the planner's cell size at least (None: none set); turned once per grid.

        Coarsened first: a perception grid at 5 cm would make planning cost a control period, and turning it too.
        """
        if self._grid is None or self._grid_in_odom is not None:
            return self._grid_in_odom
        grid, (x, y, yaw) = self._grid
        grid = coarsen(grid, self.config.cell_m)
        if abs(yaw) <= 1e-6:
            self._grid_in_odom = Grid(grid.occupied, grid.resolution, (grid.origin[0] + x, grid.origin[1] + y))
        else:
            c, s = np.cos(yaw), np.sin(yaw)
            ox, oy = grid.origin
            self._grid_in_odom = aligned_grid(grid.occupied, grid.resolution,
                                              (x + c * ox - s * oy, y + s * ox + c * oy, yaw))
        return self._grid_in_odom

    def set_goal(self, xy: np.ndarray | None) -> None:
        """Route goal in the odom frame (None: re-plan towards where the nominal command heads)."""
        self._goal = None if xy is None else np.asarray(xy, float).reshape(2)

    @property
    def route(self) -> np.ndarray | None:
        """The active detour (N, 2) in the odom frame, or None."""
        return self._route

    def resume_from(self, linear: float, angular: float) -> None:
        """Ramp the next commands from this measured velocity, never from above the last command.

        After a gap in the commands (a stalled process) the driver may have stopped the base: the last command is
        no longer what it does. A base still faster than its last command (it lags the command while braking) is
        not commanded faster again: per axis the ramp starts from whichever of the two is nearer zero, and from
        zero where they point opposite ways.
        """
        c = self.config
        measured = np.array([np.clip(linear, -c.max_linear, c.max_linear),
                             np.clip(angular, -c.max_angular, c.max_angular)])
        same_way = np.sign(measured) == np.sign(self._out)
        self._out = np.where(same_way, np.sign(measured) * np.minimum(np.abs(measured), np.abs(self._out)), 0.0)

    # ---- cycle --------------------------------------------------------------------------------------------------
    def nominal(self, now_s: float) -> tuple[float, float] | None:
        """The command the policy/planner asks for now (None when there is none)."""
        cmd_t = self._cmd_vel[2] if self._cmd_vel is not None else -np.inf
        if self._ref is not None and self._ref_time >= cmd_t:
            if now_s > self._ref.end + self.config.max_age_s:
                return None
            v, _ = self._ref.sample(now_s)
            return float(v[0]), float(v[1])
        if self._cmd_vel is not None:
            return self._cmd_vel[0], self._cmd_vel[1]
        return None

    def step(self, now_s: float, stop_reasons: Sequence[str] = (), dt_s: float | None = None) -> AmrCommand:
        """One control cycle: corrected (linear, angular) with flags and reasons.

        Args:
            now_s: current time [s].
            stop_reasons: reasons to stop (stale inputs); empty when none.
            dt_s: time this cycle stands for [s] (since the previous one; the acceleration limits allow that much
                change); None = one period. A cycle run early (at a new LiDAR frame) stands for less.
        """
        c = self.config
        flags, reasons = 0, list(stop_reasons)
        nominal = self.nominal(now_s)
        final_s = None
        if nominal is not None:
            nominal, final_s = self._approach(nominal)
        target = (0.0, 0.0)
        scale, clearance, ttc = 0.0, float("inf"), float("inf")
        if stop_reasons:
            pass
        elif nominal is None:
            reasons.append("no command: stopping")
        else:
            blocked, scale, clearance, ttc = self._evaluate(*nominal, final_s)
            # A detour carries on where the nominal command goes; a nominal that no longer drives (the policy stops
            # or turns on the spot, e.g. at its goal) ends it. Followed on, a detour planned towards a point ahead
            # drove a fleet robot 3 m past its goal while its policy turned back (in-process fleet, seed 200000).
            driving = abs(nominal[0]) >= c.detour_min_speed_mps
            if self._route is not None and not driving:
                self._route = None
                reasons.append("nominal command stopped: detour dropped")
            if blocked:
                self._clear_since = None
            elif self._route is not None:
                self._clear_since = now_s if self._clear_since is None else self._clear_since
                if now_s - self._clear_since >= c.resume_s:
                    self._route = None
                    reasons.append("path clear: resumed nominal command")
            if blocked:
                self._blocked_at = now_s
            elif now_s - self._blocked_at >= c.resume_s:  # a clear instant between jittery estimates is no end
                self._waiting_since = None
            if now_s < self._giving_way_until:  # keep moving out of the way (see _stop_or_give_way)
                target, f, r = self._stop_or_give_way(nominal, "path blocked: stopping", now_s)
                flags |= f
                reasons += r
            elif self._route is None and not blocked:
                target = (scale * nominal[0], scale * nominal[1])
                if scale < 1.0:
                    flags |= Flag.OBSTACLE_SLOWDOWN
                    reasons.append(f"obstacle ahead (ttc {ttc:.2f} s): speed x{scale:.2f}")
            elif blocked and self._route is None and self._moving_blocker(nominal) and self._may_wait(now_s):
                target, f, r = self._stop_or_give_way(nominal, "path blocked by a moving obstacle: waiting",
                                                     now_s)
                flags |= f
                reasons += r
            else:
                if self._route is None and self._pose is not None and driving:
                    self._replan(nominal)
                    if self._route is not None:
                        flags |= Flag.REPLANNED
                        reasons.append("path blocked: re-planned route")
                target, f, r = self._detour_or_steer(nominal, now_s)
                flags |= f
                reasons += r
        return self._limit(target, flags, reasons, scale, clearance, ttc, c.period_s if dt_s is None else dt_s)

    def _approach(self, nominal: tuple[float, float]) -> tuple[tuple[float, float], float | None]:
        """The nominal command near the goal; in the final approach also the time [s] it takes to the goal.

        The command is capped to stop the base at the goal, and steered to it at the end.

        A policy that reaches its goal still driving overshoots it, and past its goal it is in a scene it never
        learned: in the fleet robot2's policy crossed its goal at 0.6 m/s and then drove back along its route (seeds
        200003, 200009). So the speed is capped to what stops the base at the goal, and the base stops within
        goal_tolerance_m, as a goal checker ends a Nav2 controller. A policy that arrives off its line does not close
        the last few decimetres either: through the nodes robot2 came to rest 0.4 m beside its goal (seed 200002),
        turned on the spot and drove 8 m back. Within goal_approach_m the base therefore turns towards the goal and
        drives to it, as a Nav2 controller's final approach does. That motion ends at the goal, so it is checked
        only that far (see `_evaluate`). Unchanged without a goal.
        """
        c = self.config
        if self._goal is None or self._pose is None:
            return nominal, None
        to_goal = self._goal - self._pose[:2]
        dist = float(np.hypot(*to_goal))
        if dist <= c.goal_tolerance_m:
            return (0.0, 0.0), None
        cap = float(np.sqrt(2.0 * c.goal_decel_mps2 * (dist - c.goal_tolerance_m)))
        if dist > c.goal_approach_m:
            return (float(np.clip(nominal[0], -cap, cap)), nominal[1]), None
        error = float(np.angle(np.exp(1j * (np.arctan2(to_goal[1], to_goal[0]) - self._pose[2]))))
        # forward only, fastest when facing the goal; turning at _APPROACH_TURN_GAIN rad/s per rad of heading error
        w = float(np.clip(_APPROACH_TURN_GAIN * error, -c.max_angular, c.max_angular))
        v = cap * max(0.0, float(np.cos(error))) ** 2
        # held at v, then braked at max_linear_acc, the swept base travels `dist`: up to the goal, no farther
        to_goal_s = dist / v + v / (2.0 * c.max_linear_acc) if v > 1e-3 else c.horizon_s
        return (v, w), min(to_goal_s, c.horizon_s)

    def _candidates(self, v: np.ndarray, w: np.ndarray, extra: float = 0.0, corridors: bool = True,
                    movers_only: bool = False, horizon_s: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(safe mask, t_hit, distance now) per candidate command, keeping clearance + extra.

        Swept over `horizon_s` (at most the configured horizon; None: all of it).

        With `corridors`, moving obstacles are swept as the corridor ahead of them (moving_headway_s) and where the
        motion ends at rest, nothing moving may reach it for rest_check_s more: for motions that go on with the
        task. Motions out of a worker's way are judged against where the worker will be. `movers_only` leaves out
        the tracks slower than yield_speed_mps, whose velocity may be only noise (what stands is in the LiDAR cells).
        """
        c = self.config
        ramp = (float(self._out[0]), float(self._out[1]), c.max_linear_acc, c.max_angular_acc)
        if corridors:
            tracks = self._swept_movers if movers_only else self._swept
        else:
            tracks = self._movers if movers_only else self._obstacles
        times = self._times if horizon_s is None else self._times * (horizon_s / c.horizon_s)
        t_hit, dist = sweep(c.footprint, v, w, times, self._cells, self._cell_pad, tracks,
                            c.clearance_m + self._sample_margin + extra, ramp,
                            (c.rest_check_s, self._movers) if corridors else None)
        # Each candidate is swept as the motion the base would really make (ramp to it, hold, brake to rest by the
        # end of the horizon), so "no hit" also means a safe stop remains possible afterwards.
        safe = ~np.isfinite(t_hit)
        return safe, t_hit, dist

    def _evaluate(self, v: float, w: float, final_s: float | None = None) -> tuple[bool, float, float, float]:
        """(blocked, speed scale, clearance now, time to collision at full speed) along the nominal command.

        Proactive: the fastest scale whose sweep (with every obstacle's predicted motion) is free wins, so the base
        slows as soon as anything comes into its path; if none is free, the path is blocked.

        In the final approach to a goal (`final_s`: the time the motion takes to the goal) the sweep ends at the goal
        and what stands is judged by the LiDAR cells alone, with the moving tracks as always. Held for the whole
        horizon, the motion ran 0.6 m past the goal; and the tracked box of the shelf 1.3 m beyond the goal stood
        0.7 m in front of the shelf's points (a box smoothed over changing views, then covered with discs). Both
        blocked the path, and steering around them turned the base away from its goal, back and forth for 40 s
        (seed 200003 through the nodes).
        """
        scales = np.asarray(self.config.speed_scales)
        # Stop where the base can still turn on the spot (its corners swing out by radius - half length).
        fp = self.config.footprint
        free, t_hit, dist = self._candidates(scales * v, scales * w, fp.radius - fp.length / 2,
                                             movers_only=final_s is not None, horizon_s=final_s)
        ttc, clearance = float(t_hit[0]), float(dist[0])
        if abs(v) < 1e-3 and abs(w) < 1e-3:
            return False, 1.0, clearance, ttc
        if free.any():
            return False, float(scales[np.argmax(free)]), clearance, ttc
        return True, 0.0, clearance, ttc

    def _moving(self, velocities: np.ndarray) -> np.ndarray:
        """Which obstacles move (faster than yield_speed_mps): waited for, and swept as corridors."""
        return np.hypot(velocities[:, 0], velocities[:, 1]) > self.config.yield_speed_mps

    def _moving_blocker(self, nominal: tuple[float, float]) -> bool:
        """Whether something moving (faster than yield_speed_mps) ahead comes within reach over the look-ahead."""
        centres, radii, vel = self._obstacles
        if centres.shape[0] == 0:
            return False
        c = self.config
        moving = self._moving(vel)
        ahead = centres[:, 0] * np.sign(nominal[0] or 1.0) > -c.footprint.length / 2
        # Closest approach to the base over the horizon and headway: a crossing worker blocks the path from afar.
        t = np.linspace(0.0, c.horizon_s + c.moving_headway_s, 16)
        path = centres[:, None, :] + vel[:, None, :] * t[None, :, None]
        near = np.hypot(path[..., 0], path[..., 1]).min(axis=1) - radii < self._reach
        return bool(np.any(moving & ahead & near))

    def _stop_or_give_way(self, nominal: tuple[float, float], reason: str, now_s: float
                          ) -> tuple[tuple[float, float], int, list[str]]:
        """Stop (for `reason`), unless something moving would still walk into the stopped base.

        A worker walking into the side of a base stopped in its way: drive on along the nominal heading or back
        off, whichever motion keeps the clearance (in that order of preference); when none does, the one that stays out
        of contact longest, if that is longer than standing still would. Once giving way, the base keeps at it (the best
        motion, re-chosen each cycle) for `give_way_hold_s`: on noisy tracks the comparison with standing still
        flips from cycle to cycle, and alternating between backing off and braking escapes nothing.
        """
        stop = (0.0, 0.0), Flag.OBSTACLE_STOP
        # Standing still is judged on contact, not on the clearance: a worker passing the stopped base within the
        # clearance is no reason to move, and on a jittery track "within the clearance" came and went; the base
        # then drove on into the worker's lane instead of stopping short of it (ROS traces, seeds 100002 and 100013).
        # Only what moves faster than yield_speed_mps walks into a stopped base: a shelf's track drifting at a noisy
        # 0.2 m/s sent a fleet robot backing off at full speed as it started (in-process fleet, seed 200000).
        standing_safe, standing_hit, _ = self._candidates(np.zeros(1), np.zeros(1), -self.config.clearance_m,
                                                          corridors=False, movers_only=True)
        c = self.config
        ahead = np.sign(nominal[0]) if nominal[0] != 0 else 1.0
        vv = np.array([1.0, 0.6, -0.3, -0.3, -0.3, -0.6, -1.0]) * ahead * c.max_linear
        ww = np.array([nominal[1], nominal[1], 0.0, 0.5, -0.5, 0.0, 0.0])
        if standing_safe[0] and now_s >= self._giving_way_until:
            # A person walking at the stopped base is seen coming within the look-ahead only 2.8 m off (at 1.4 m/s),
            # too late to keep the clearance: through the nodes a worker came within 0.05 m and once touched a fleet
            # robot that waited mid-aisle (seed 200008). A person who would reach it within the look-ahead plus
            # rest_check_s is given way to now, along a motion that passes the full check (the clearance kept, the
            # walkers' corridors, a safe rest). Only people: giving way this early to other robots cost the fleet its
            # goals (robots that stop for each other near their goals), and a robot is never classed a person.
            if self._person_reaches_stopped_base():
                early, _, _ = self._candidates(vv, ww)
                if early.any():
                    k = int(np.argmax(early))
                    self._giving_way_until = now_s + c.give_way_hold_s
                    return (float(vv[k]), float(ww[k])), Flag.STEERING_CORRECTED, [
                        "a person would reach the stopped base: giving way early"]
            return *stop, [reason]
        safe, t_hit, _ = self._candidates(vv, ww, corridors=False)
        if safe.any():
            k = int(np.argmax(safe))
        else:  # none keeps the clearance: judged on contact, as standing still is (a clearance-hit time came
            # sooner than standing's contact time, so a base that could still back out of a lane stood and was hit);
            # among equals the one that keeps the clearance longest, which holds steady on noisy tracks
            _, t_contact, _ = self._candidates(vv, ww, -c.clearance_m, corridors=False)
            k = int(np.lexsort((t_hit, t_contact))[-1])
            t_hit = t_contact
        if safe[k] or t_hit[k] > standing_hit[0] or now_s < self._giving_way_until:
            if now_s >= self._giving_way_until:
                self._giving_way_until = now_s + c.give_way_hold_s
            return (float(vv[k]), float(ww[k])), Flag.STEERING_CORRECTED, [
                "a moving obstacle would reach the stopped base: giving way"]
        return *stop, [f"{reason} (no motion keeps clear of what moves)"]

    def _person_reaches_stopped_base(self) -> bool:
        """Whether a walking person would touch the base braked to rest here within horizon_s + rest_check_s."""
        c = self.config
        if self._walkers[1].size == 0:
            return False
        ramp = (float(self._out[0]), float(self._out[1]), c.max_linear_acc, c.max_angular_acc)
        t_hit, _ = sweep(c.footprint, np.zeros(1), np.zeros(1), self._times, np.zeros((0, 2)), 0.0, self._walkers,
                         self._sample_margin, ramp, (c.rest_check_s, self._walkers))
        return bool(np.isfinite(t_hit[0]))

    def _may_wait(self, now_s: float) -> bool:
        """Whether waiting for a moving blocker may go on (it has not lasted `yield_timeout_s` yet)."""
        if self._waiting_since is None:
            self._waiting_since = now_s
        return now_s - self._waiting_since < self.config.yield_timeout_s

    def _detour_or_steer(self, nominal: tuple[float, float], now_s: float
                         ) -> tuple[tuple[float, float], int, list[str]]:
        c = self.config
        if self._route is not None and self._pose is not None:
            v, w = self._pursue(self._route)
            slow = np.array([1.0, 0.5, 0.25, 0.1])  # same curvature, slower: near obstacles only a crawl is safe
            safe, _, _ = self._candidates(slow * v, slow * w)
            if safe.any():
                k = int(np.argmax(safe))
                return (float(slow[k] * v), float(slow[k] * w)), Flag.STEERING_CORRECTED, ["following re-planned route"]
            # The route needs a turn the base has no room for here: back off slowly (turning towards the route).
            back_w = np.array([0.3, 0.0, -0.3]) * np.sign(w or 1.0)
            safe, _, _ = self._candidates(np.full(3, -0.15), back_w)
            if safe.any():
                k = int(np.argmax(safe))
                return (-0.15, float(back_w[k])), Flag.STEERING_CORRECTED, ["backing off to turn onto the route"]
        v0, w0 = nominal
        speeds = np.array([abs(v0), 0.6 * abs(v0), 0.3 * abs(v0)]) * np.sign(v0 if v0 != 0 else 1.0)
        offs = np.asarray(c.steer_offsets)
        vv = np.repeat(speeds, offs.size)
        ww = np.clip(w0 + np.tile(offs, speeds.size), -c.max_angular, c.max_angular)
        # Backing off slowly is the way out when something is already inside the clearance.
        vv = np.concatenate([vv, [-0.15, -0.15, -0.15]])
        ww = np.concatenate([ww, [0.0, 0.5, -0.5]])
        safe, _, _ = self._candidates(vv, ww)
        if safe.any():
            progress = np.where(safe, np.abs(vv) - 0.2 * np.abs(ww - w0), -np.inf)
            k = int(np.argmax(progress))
            return (float(vv[k]), float(ww[k])), Flag.STEERING_CORRECTED, ["path blocked: steering around"]
        return self._stop_or_give_way(nominal, "path blocked: stopping", now_s)

    def _pursue(self, route: np.ndarray) -> tuple[float, float]:
        """Pure pursuit on the route (odom frame) at the base's speed limit."""
        c = self.config
        local = _to_robot(self._pose, route)
        ahead = np.flatnonzero((np.hypot(local[:, 0], local[:, 1]) >= c.lookahead_m) & (local[:, 0] > -0.1))
        tx, ty = local[ahead[0]] if ahead.size else local[-1]
        heading_error = float(np.arctan2(ty, tx))
        if abs(heading_error) > 0.5:  # turn on the spot first: arcs near obstacles swing the corners into them
            return 0.0, float(np.clip(2.0 * heading_error, -0.6 * c.max_angular, 0.6 * c.max_angular))
        d2 = max(tx * tx + ty * ty, 1e-6)
        curvature = 2.0 * ty / d2
        v = c.max_linear * (0.5 if abs(curvature) > 1.0 else 0.8)
        return v, float(np.clip(v * curvature, -c.max_angular, c.max_angular))

    def _replan(self, nominal: tuple[float, float]) -> None:
        c = self.config
        pose = self._pose
        assert pose is not None
        if self._goal is not None:
            goal = self._goal
        else:
            heading = pose[2] + np.clip(nominal[1] * 1.0, -1.0, 1.0)
            goal = pose[:2] + c.local_goal_m * np.array([np.cos(heading), np.sin(heading)])
        grid = self._turned_grid()
        if grid is None:  # no map: plan on a local grid made of the LiDAR cells
            size = 2 * self._reach
            n = int(np.ceil(size / c.cell_m))
            occ = np.zeros((n, n), dtype=bool)
            origin = pose[:2] - size / 2
            grid = Grid(occ, c.cell_m, (float(origin[0]), float(origin[1])))
            if self._cells.shape[0]:
                rc = grid.to_cell(_to_odom(pose, self._cells))
                ok = np.all((rc >= 0) & (rc < n), axis=1)
                occ[rc[ok, 0], rc[ok, 1]] = True
        centres, radii, vel = self._obstacles
        if centres.shape[0]:
            # Stamp obstacles where they will be over the next second (a standing worker or a slow passer-by).
            future = np.concatenate([centres + vel * t for t in (0.0, 0.5, 1.0)])
            grid = stamp_obstacles(grid, _to_odom(pose, future), np.tile(radii, 3))
        path = plan(grid, pose[:2], goal, c.footprint.radius + c.clearance_m + 0.05)
        self.replans += 1
        self._route = path if path is not None and len(path) > 1 else None
        self._clear_since = None

    def _limit(self, target: tuple[float, float], flags: int, reasons: list[str], scale: float, clearance: float,
               ttc: float, dt_s: float) -> AmrCommand:
        c = self.config
        v = float(np.clip(target[0], -c.max_linear, c.max_linear))
        w = float(np.clip(target[1], -c.max_angular, c.max_angular))
        dt = min(max(dt_s, 0.0), c.period_s) if np.isfinite(dt_s) else 0.0
        dv, dw = c.max_linear_acc * dt, c.max_angular_acc * dt
        lv = float(np.clip(v, self._out[0] - dv, self._out[0] + dv))
        lw = float(np.clip(w, self._out[1] - dw, self._out[1] + dw))
        if (lv, lw) != (v, w):
            flags |= Flag.LIMIT_ACCELERATION
        self._out = np.array([lv, lw])
        return AmrCommand(lv, lw, flags, reasons, scale, clearance, ttc)
