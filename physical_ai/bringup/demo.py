"""`physai demo [amr|arm|vehicle]`: the main job. The whole stack on the MuJoCo simulator, one task, one report.

Default: the factory AMR drives from the pick-up to the drop-off station while a worker crosses its path. The
simulator, perception, policy and corrector run as separate processes over DDS (as `physai run` starts them),
with a recorder writing every topic to MCAP. A monitor prints a live progress line and, at the end, a summary
and a report folder: map.png, timeline.png, latency.png, metrics.json, recording.mcap, logs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import threading
import time
from pathlib import Path

from physical_ai.bringup.processes import Supervisor
from physical_ai.bringup.report import latency_summary, write_report
from physical_ai.bringup.stack import (
    FOXGLOVE,
    RECORDER,
    clock_topic,
    node_command,
    node_params,
    params_file,
    share_dir,
    stack_commands,
    with_realtime,
)
from physical_ai.control.amr import amr_config

SCENARIO_MODEL = {"amr": "factory_floor", "arm": "arm_cell", "vehicle": "vehicle_lane", "fleet": "factory_floor"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Demo options."""
    parser.add_argument("scenario", nargs="?", default="amr", choices=sorted(SCENARIO_MODEL),
                        help="amr (default): factory AMR with a crossing worker; arm: pick and place; vehicle: lane; "
                             "fleet: three AMRs on one floor, each with its own namespaced stack")
    parser.add_argument("--seed", type=int, default=3, help="scenario seed (part poses, worker timing)")
    parser.add_argument("--worker-trigger-m", type=float, default=4.5,
                        help="amr: a worker steps out when the AMR is this close to its aisle, so the run shows a "
                             "reaction (0 = the seed's random crossing times)")
    parser.add_argument("--out", default=None, help="report folder (default reports/demo-<scenario>-<time>)")
    parser.add_argument("--policy", default=None, help="policy checkpoint directory (default: from config)")
    parser.add_argument("--params-file", default=None, help="parameter file (default: config/<scenario>.yaml)")
    parser.add_argument("--wall-timeout", type=float, default=150.0, help="give up after this long [s]")
    parser.add_argument("--realtime", action="store_true",
                        help="run the corrector and the simulator (the robot's drivers) under SCHED_FIFO, as "
                             "deployed (README, 'Real-time priority'; needs root or CAP_SYS_NICE)")
    parser.add_argument("--foxglove", action="store_true",
                        help="also serve a Foxglove WebSocket live view (port from the config, default 8765)")
    parser.add_argument("--namespace", default="",
                        help="run the robot's stack (and its simulator, on its own clock) under this ROS namespace")
    parser.add_argument("--policy-server", action="store_true",
                        help="fleet: serve the robots' policy from one `physai serve` process (openpi protocol, "
                             "requests batched across robots) instead of one policy per robot")


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit code 0 when the task succeeded with no collision and no limit violation."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from physical_ai_nodes._base import use_shipped_fastdds_profile
    from physical_ai_nodes._run_monitor import RunMonitor

    if args.scenario == "fleet":
        return run_fleet(args)
    robot = args.scenario
    params = params_file(robot, args.params_file)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or Path("reports") / f"demo-{robot}-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    corr = node_params(params, "trajectory_correction", args.namespace)

    overrides = {"mujoco_sim": {"seed": str(args.seed)}}
    if robot == "amr" and args.worker_trigger_m > 0:
        overrides["mujoco_sim"]["worker_trigger_m"] = str(args.worker_trigger_m)
    if args.policy:
        overrides["policy_inference"] = {"checkpoint": str(Path(args.policy).resolve())}
    ns = args.namespace
    commands = stack_commands("mujoco", params, namespace=ns, use_sim_time=True, overrides=overrides)
    if args.realtime:
        try:
            commands = with_realtime(commands)
        except PermissionError as exc:
            raise SystemExit(f"--realtime: {exc}") from exc
    commands.append((RECORDER, node_command(RECORDER, params, namespace=ns, use_sim_time=True, private_clock=True,
                                            overrides={"output": str(out / "recording.mcap")})))
    if args.foxglove:
        commands.append((FOXGLOVE, node_command(FOXGLOVE, params, namespace=ns, use_sim_time=True,
                                                private_clock=True)))
        live = node_params(params, FOXGLOVE.name)
        print(f"[demo] live view: open ws://{live.get('host', '127.0.0.1')}:{live.get('port', 8765)} in Foxglove "
              "(Open connection > Foxglove WebSocket)", flush=True)

    events: list[str] = []
    supervisor = Supervisor(commands, log_dir=out / "logs", env=dict(os.environ),
                            on_event=lambda text: events.append(f"{time.strftime('%H:%M:%S')} {text}"))
    use_shipped_fastdds_profile()
    rclpy.init()
    if robot == "vehicle":  # Ackermann commands on /ackermann_cmd, not /cmd_vel
        from physical_ai_nodes._vehicle_monitor import VehicleRunMonitor

        monitor = VehicleRunMonitor(str(corr.get("ackermann_topic", "ackermann_cmd")), namespace=ns,
                                    clock_topic=clock_topic(ns))
    else:
        monitor = RunMonitor(robot, amr_config(corr) if robot == "amr" else None, namespace=ns,
                             clock_topic=clock_topic(ns))
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    print(f"[demo] {robot}: starting simulator, perception, policy, corrector and recorder; report in {out}",
          flush=True)
    start = time.monotonic()
    exit_reason = "timeout"
    try:
        supervisor.start()
        spinner.start()
        last_print = 0.0
        while time.monotonic() - start < args.wall_timeout:
            if supervisor.poll() is not None:
                exit_reason = "a required node died"
                break
            state = monitor.state()
            gt = state["gt"]
            if time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                _progress_line(gt, state["status"], state["speed"], monitor)
            if gt is not None and gt.episode_done:
                exit_reason = "episode done"
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        exit_reason = "interrupted"
    finally:
        print("", flush=True)
        monitor.mark_stopping()  # the corrector's stop command ends the run: not judged against the limits
        supervisor.stop()
        executor.shutdown()
    gt = monitor.state()["gt"]
    reactions = monitor.reaction_latencies_ms()
    violations = monitor.limit_violations(
        float(corr.get("max_linear", 1.0)), float(corr.get("max_angular", 1.5)),
        float(corr.get("max_linear_acc", 1.0)), float(corr.get("max_angular_acc", 2.0)),
        period_s=1.0 / float(corr.get("rate_hz", 100.0))) if robot == "amr" else 0
    if robot == "vehicle":
        violations = monitor.vehicle_limit_violations(
            float(corr.get("max_speed", 15.0)), float(corr.get("max_steer", 0.5)),
            float(corr.get("max_steer_rate", 0.6)), float(corr.get("max_acc", 2.0)),
            float(corr.get("max_decel", 5.0)), period_s=1.0 / float(corr.get("rate_hz", 100.0)))
    log = monitor.log
    log.summary.update({
        "scenario": robot, "seed": args.seed, "exit_reason": exit_reason,
        "task_success": bool(gt.task_success) if gt is not None else False,
        "collisions": int(gt.collisions) if gt is not None else None,
        "sim_time_s": round(gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9, 2) if gt is not None else None,
        "progress": round(float(gt.progress), 3) if gt is not None else 0.0,
        "limit_violations": violations,
        "configured_clearance_m": float(corr.get("clearance_m", 0.3)),
        "reaction_events": len(reactions),
        "reactions_not_needed": monitor.reactions_not_needed,
        "wall_time_s": round(time.monotonic() - start, 1),
        # sim seconds per wall second while the simulator ran (its /clock publications): below 1 the stack fell
        # behind real time and every latency figure was taken on a slowed world
        "realtime_factor": round(monitor.realtime_factor(), 3),
        "node_events": events,
    })
    if robot == "vehicle":
        log.summary["lead_car_gap_m"] = round(monitor.lead_gap_m, 2)
        log.summary["limit_checks"] = (f"{monitor.commands_received} ackermann_cmd: speed, steering angle, "
                                       "steering rate, acceleration, braking")
    for r in reactions:
        log.add_latency("reaction_e2e_ms", r)
    if robot == "amr":
        log.goal = (6.5, 0.0)
    log.summary["recording"] = recording_summary(out / "recording.mcap")
    monitor.destroy_node()
    rclpy.try_shutdown()
    metrics = write_report(log, out, share_dir() / "models" / SCENARIO_MODEL[robot] / f"{SCENARIO_MODEL[robot]}.xml")
    _print_summary(metrics, out)
    ok = bool(metrics["task_success"]) and not metrics["collisions"] and not violations
    return 0 if ok else 1


def run_fleet(args: argparse.Namespace) -> int:
    """`physai demo fleet`: one episode of the fleet (`physical_ai.bringup.fleet`); exit 0 when every robot succeeded.

    Report folder: metrics.json (per robot: success, contacts by kind, clearances, reaction latencies, the other
    robots its perception saw) and per robot map.png, timeline.png and latency.png; logs/<robot>/<node>.log.
    """
    from physical_ai.bringup.fleet import FleetRun, fleet_commands, fleet_params, summarise
    from physical_ai.bringup.processes import stop_on_sigterm

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or Path("reports") / f"demo-fleet-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    params = fleet_params(args.params_file)
    overrides: dict[str, dict[str, str]] = {}
    policy = str(Path(args.policy).resolve()) if args.policy else None
    if policy and not args.policy_server:
        overrides["policy_inference"] = {"checkpoint": policy}
    server = (policy or str(share_dir() / "models" / "amr_nav")) if args.policy_server else None
    commands = fleet_commands(params, seed=args.seed, overrides=overrides, policy_server=server)
    print(f"[demo] fleet: one simulator, 3 robots x (perception, policy, corrector)"
          f"{', one policy server' if server else ''}; report in {out}", flush=True)

    start = time.monotonic()
    try:
        with stop_on_sigterm(), FleetRun(commands, params, log_dir=out / "logs", env=dict(os.environ)) as run:

            def progress(gt) -> None:
                robots = []
                for name, monitor in run.monitors.items():
                    own = monitor.state()["gt"]
                    if own is not None:
                        robots.append(f"{name} {own.progress * 100:3.0f}%{' done' if own.task_success else ''}")
                t = gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9
                print(f"[demo] t={t:5.1f}s  {'  '.join(robots)}  collisions={gt.collisions}", flush=True)

            run.wait_ready(timeout_s=args.wall_timeout)
            results = run.episode(args.seed, wall_timeout_s=max(args.wall_timeout, 300.0), progress=progress)
            monitors = run.monitors
            events = run.events
    except KeyboardInterrupt:
        print("[demo] interrupted", flush=True)
        return 1
    summary = summarise([results])
    summary.update(seed=args.seed, wall_time_s=round(time.monotonic() - start, 1), node_events=events,
                   episode=[dataclasses.asdict(r) for r in results])
    mjcf = share_dir() / "models" / "factory_floor" / "factory_floor.xml"
    for robot, monitor in monitors.items():
        write_report(monitor.log, out / robot, mjcf)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print("\n==== fleet demo summary ====")
    for r in results:
        print(f"{r.robot}: {'success' if r.success else 'FAILED'} in {r.time_s:.1f} s; contacts robot "
              f"{r.contacts['robot']} person {r.contacts['person']} static {r.contacts['static']}; min clearance "
              f"people {r.min_person_clearance_m:.2f} m, robots {r.min_robot_clearance_m:.2f} m; saw the others in "
              f"{sum(r.robots_seen.values())} perception frames; reactions {r.reaction_ms} ms")
    print(f"report: {out}/ (metrics.json, <robot>/map.png, timeline.png, latency.png, logs/)")
    ok = all(r.success for r in results) and summary["collisions"] == 0
    return 0 if ok else 1


def recording_summary(path: Path) -> dict:
    """Size, MB per recorded (sim) second and the reference readers' verdict of the demo's recording."""
    from physical_ai.recording_tools import check_recording, recording_info

    try:
        info = recording_info(path)
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), "size_mb": round(info.size_bytes / 1e6, 2), "duration_s": round(info.duration_s, 2),
            "mb_per_s": round(info.mb_per_s, 3), "messages": info.messages, "chunks": info.chunks,
            "compression": info.compression, "problems": check_recording(path),
            "largest_topics_mb": {t.topic: round(t.bytes / 1e6, 2) for t in info.topics[:5]}}


def _progress_line(gt, status, speed: float, monitor) -> None:
    if gt is None:
        text = "waiting for the simulator..."
    else:
        t = gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9
        active = ",".join(status.reasons)[:40] if status is not None and status.reasons else "-"
        policy = latency_summary(monitor.log.latencies_ms.get("policy_inference_ms", []))["p50"]
        gap = getattr(monitor, "lead_gap_m", None)  # vehicle: no people; the gap to the car ahead instead
        near = f"lead car gap={gap:5.2f} m" if gap is not None else f"nearest person={gt.min_person_clearance_m:5.2f} m"
        text = (f"t={t:5.1f}s progress={gt.progress * 100:5.1f}% speed={speed:4.2f} m/s "
                f"{near} collisions={gt.collisions} "
                f"policy p50={policy:5.1f} ms corrector: {active}")
    end = "\r" if sys.stdout.isatty() else "\n"
    print(f"[demo] {text:<130}", end=end, flush=True)


def _print_summary(metrics: dict, out: Path) -> None:
    lat = metrics.get("latency_ms", {})

    def p(key: str, q: str) -> str:
        value = lat.get(key, {}).get(q)
        return "n/a" if value is None or value != value else f"{value:.1f} ms"

    print("\n==== demo summary ====")
    print(f"task success          : {metrics.get('task_success')}  ({metrics.get('exit_reason')}, "
          f"sim time {metrics.get('sim_time_s')} s, progress {metrics.get('progress')})")
    print(f"collisions            : {metrics.get('collisions')}")
    print(f"real-time factor      : {metrics.get('realtime_factor')} (demo.{metrics.get('scenario')}.realtime_factor: "
          "sim s / wall s while the simulator ran; >= 1.0 keeps real time)")
    if "min_person_clearance_m" in metrics or metrics.get("scenario") != "vehicle":
        print(f"min clearance (people): {metrics.get('min_person_clearance_m', float('nan')):.2f} m "
              f"(configured {metrics.get('configured_clearance_m')} m)")
        print(f"reaction latency      : p50 {p('reaction_e2e_ms', 'p50')}, p99 {p('reaction_e2e_ms', 'p99')} "
              f"over {metrics.get('reaction_events')} event(s) (LiDAR stamp -> first corrected cmd_vel)")
    else:  # the lane scenario has no people: clearance and person reaction do not apply
        print("min clearance (people): n/a (no people in the lane scenario)")
        print("reaction latency      : n/a (measured for people entering the path)")
        print(f"lead car gap (end)    : {metrics.get('lead_car_gap_m')} m (task: stop 1-10 m behind it)")
    print(f"limit violations      : {metrics.get('limit_violations')}"
          + (f" ({metrics['limit_checks']})" if "limit_checks" in metrics else ""))
    print(f"policy latency        : p50 {p('policy_inference_ms', 'p50')}, p99 {p('policy_inference_ms', 'p99')}")
    print(f"perception e2e        : p50 {p('perception_e2e_ms', 'p50')}, p99 {p('perception_e2e_ms', 'p99')}")
    print(f"correction cycle      : p50 {p('correction_cycle_ms', 'p50')}, p99 {p('correction_cycle_ms', 'p99')}")
    rec = metrics.get("recording", {})
    if "mb_per_s" in rec:
        check = "valid" if not rec["problems"] else "; ".join(rec["problems"])
        print(f"recording             : {rec['size_mb']:.1f} MB over {rec['duration_s']:.1f} s recorded = "
              f"{rec['mb_per_s']:.2f} MB/s ({rec['compression']} chunks, {rec['messages']} messages; {check})")
    else:
        print(f"recording             : {rec.get('error', 'none')}")
    print(f"report                : {out}/ (map.png, timeline.png, latency.png, metrics.json, recording.mcap)")
    print(json.dumps({k: metrics.get(k) for k in ("task_success", "collisions", "limit_violations")}))
