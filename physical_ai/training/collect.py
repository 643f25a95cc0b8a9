"""`physai collect <scenario>`: record scripted-expert demonstrations to a LeRobot dataset.

    physai collect amr --episodes 120 --output /tmp/amr_data

The output is a LeRobot v3.0 dataset (`physical_ai.data.lerobot_format`: parquet frames, one MP4 per camera and
episode, LeRobot's meta files), which `lerobot.datasets.LeRobotDataset` loads and `physai train` trains from. Every
scenario's camera (the arm cell's overhead camera, the AMR's and the car's front camera) is recorded as
`observation.images.<camera>` at `--camera` resolution, besides the policy's own inputs.

The simulator core runs in-process, faster than real time (no DDS). Observations are what the robot senses:
perception-core outputs (LiDAR obstacle tracks for the AMR, depth-fitted part poses for the arm), joint/odometry
state and, for the arm, the overhead camera image at policy resolution. Domain randomisation per episode: the
scenario's seeded randomisation (start pose, part poses, worker timings and directions), worker speed, sensor noise;
and DART-style action noise: the executed command is the expert's plus correlated noise on some episodes while the
recorded label stays the expert's, so the policy sees (and learns to recover from) states off the expert's path.

World-model labels: every `--wm-every` frames, K candidate chunks around the expert's action (plus a full-speed
one) are played on a fork of the true simulation; their outcomes (collision, failure, progress) are stored with the
episode as `extra.wm_*` arrays for training the learned world model.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.data.lerobot_format import DatasetWriter, Feature
from physical_ai.data.provenance import Manifest
from physical_ai.policy.observation import pad_tokens
from physical_ai.policy.spec import PolicyConfig
from physical_ai.training.envs import Env, make_env
from physical_ai.world_model.api import sample_candidates


def features_for(spec: PolicyConfig, camera: str = "", camera_size: tuple[int, int] | None = None
                 ) -> dict[str, Feature]:
    """Dataset features matching a policy spec (LeRobot names), plus `observation.images.<camera>` when given.

    Args:
        spec: the policy spec whose inputs and action are recorded.
        camera: name of the scenario's camera ('' = none).
        camera_size: (width, height) of the recorded camera images.
    """
    obs = spec.observation
    out: dict[str, Feature] = {}
    if obs.image is not None:
        _, h, w = obs.image.shape
        out["observation.image"] = Feature("video", (h, w, 3), ("height", "width", "channels"))
    if camera and camera_size is not None:
        width, height = camera_size
        out[f"observation.images.{camera}"] = Feature("video", (height, width, 3), ("height", "width", "channels"))
    if obs.state is not None:
        out["observation.state"] = Feature("float32", (len(obs.state.names),), obs.state.names)
    for key in ("obstacles", "parts"):
        group = getattr(obs, key)
        if group is not None:
            out[f"observation.{key}"] = Feature("float32", (group.max_count, len(group.features.names)),
                                                group.features.names)
            out[f"observation.{key}_mask"] = Feature("float32", (group.max_count,))
    out["action"] = Feature("float32", (spec.action_dim,), spec.action.names)
    out["progress"] = Feature("float32", ())
    return out


def action_noise_scale(env: Env) -> np.ndarray:
    """Per-channel scale of the DART noise and of world-model candidate offsets."""
    if env.embodiment == "amr":
        return np.array([0.1, 0.2])
    if env.embodiment == "vehicle":  # steering [rad], speed [m/s]
        return np.array([0.03, 0.5])
    return np.array([0.05] * 7 + [0.01])


def wm_candidates(env: Env, action: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Candidates for world-model labels: the expert's action held, noisy variants, and (AMR) full speed ahead."""
    h = env.spec.chunk_length
    base = np.tile(action, (h, 1))
    cands = sample_candidates(base, k, action_noise_scale(env) * 2.0, rng)
    if env.embodiment == "amr":
        cands[-1] = np.tile([1.0, 0.0], (h, 1))
    return cands


def record_episode(env: Env, seed: int, dart_std: float, wm_every: int, wm_k: int, max_steps: int,
                   hold_after_success: int = 10, camera_size: tuple[int, int] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """Play one expert episode; return (frames, episode meta, world-model arrays).

    `camera_size` (width, height) also records the scenario's camera image each frame.
    """
    env.reset(seed)
    spec = env.spec
    obs_spec = spec.observation
    rng = np.random.default_rng(seed + 777)
    noisy = dart_std > 0 and rng.random() < 0.5
    scale = action_noise_scale(env) * dart_std
    camera_key = f"observation.images.{env.sc.camera}" if camera_size and env.sc.camera else ""
    frames: dict[str, list[np.ndarray]] = {k: [] for k in features_for(spec, env.sc.camera, camera_size)}
    wm: dict[str, list[np.ndarray]] = {"frame": [], "candidates": [], "collision": [], "failure": [],
                                       "progress": []}
    noise = np.zeros(spec.action_dim)
    held = 0
    for step in range(max_steps):
        obs = env.observe()
        action = env.expert_action()
        if obs_spec.image is not None:
            frames["observation.image"].append(obs["image"])
        if camera_key:
            frames[camera_key].append(env.camera_image(*camera_size))
        if obs_spec.state is not None:
            frames["observation.state"].append(obs["state"])
        for key in ("obstacles", "parts"):
            group = getattr(obs_spec, key)
            if group is not None:
                values, mask = pad_tokens(obs[key], group, key)
                frames[f"observation.{key}"].append(values)
                frames[f"observation.{key}_mask"].append(mask)
        frames["action"].append(action)
        st = env.status()
        frames["progress"].append(np.float32(st.progress))
        if wm_every > 0 and step % wm_every == 0:
            cands = wm_candidates(env, action, wm_k, rng)
            outcomes = [env.rollout(c) for c in cands]
            wm["frame"].append(np.int64(step))
            wm["candidates"].append(cands.astype(np.float32))
            wm["collision"].append(np.array([o.collisions > 0 for o in outcomes]))
            wm["failure"].append(np.array([o.failure for o in outcomes]))
            wm["progress"].append(np.array([o.progress - st.progress for o in outcomes], np.float32))
        if noisy:  # Ornstein-Uhlenbeck-like correlated perturbation of the executed command
            noise = 0.8 * noise + 0.6 * scale * rng.standard_normal(spec.action_dim)
        env.apply(env.clip_action(action + noise) if noisy else action)
        st = env.status()
        if st.done:
            held += 1
            if not st.success or held > hold_after_success:
                break
            env.sc.done = False  # keep recording the expert holding still at the goal for a moment
    final = env.status()
    meta = {"seed": seed, "success": final.success, "collisions": final.collisions, "dart": bool(noisy),
            "time_s": round(final.time_s, 2), "limit_violations": env.limit_violations,
            "clamped_requests": env.clamped_requests}
    out = {k: np.stack(v) for k, v in frames.items()}
    wm_arrays = {f"wm_{k}": np.stack(v) for k, v in wm.items() if v}
    return out, meta, wm_arrays


def collect(scenario: str, output: str | Path, episodes: int, seed: int = 0, dart_std: float = 1.0,
            wm_every: int = 5, wm_k: int = 4, max_steps: int | None = None, only_success: bool = True,
            progress_bar: bool = True, perception: str = "node", camera_size: tuple[int, int] | None = (160, 120)
            ) -> dict[str, Any]:
    """Collect `episodes` expert demonstrations; return a summary (episodes kept, frames, expert success).

    `camera_size` (width, height) records the scenario's camera too (None: policy inputs only).
    """
    from tqdm import tqdm

    env = make_env(scenario, perception=perception)
    spec = env.spec
    limit = max_steps or int(np.ceil(60.0 / spec.dt))
    env.reset(seed)  # the scenario names its camera
    camera = env.sc.camera if camera_size else ""
    writer = DatasetWriter(output, robot_type=env.embodiment, fps=1.0 / spec.dt,
                           features=features_for(spec, camera, camera_size),
                           extra={"scenario": scenario, "embodiment": env.embodiment, "spec": spec.to_json(),
                                  "state_frame": "map" if env.embodiment in ("amr", "vehicle") else "joint",
                                  "perception": perception, "dart_std": dart_std, "wm_every": wm_every,
                                  "wm_k": wm_k, "seed": seed})
    tried = kept = 0
    bar = tqdm(total=episodes, desc=f"collect {scenario}", unit="ep", disable=not progress_bar)
    stop = _Interrupts()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupted = False
    try:
        while kept < episodes and tried < episodes * 3:
            frames, meta, wm = record_episode(env, seed + tried, dart_std, wm_every, wm_k, limit,
                                              camera_size=camera_size)
            tried += 1
            if only_success and not meta["success"] and max_steps is None:
                continue
            with stop.held():  # an episode is written whole or not at all (shard and its entry together)
                writer.add_episode(frames, task=env.observe()["instruction"], meta=meta, extra_arrays=wm)
                kept += 1
            bar.update(1)
            bar.set_postfix(kept=kept, tried=tried)
    except KeyboardInterrupt:
        # the episode in progress is lost; every finished one is kept and the dataset is closed properly
        interrupted = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        env.close()
    if kept == 0:
        raise RuntimeError(f"collect {scenario}: no episode recorded ({tried} tried)")
    writer.finish()
    manifest = Manifest.start("physai collect", {"scenario": scenario, "episodes": episodes, "seed": seed,
                                                 "dart_std": dart_std, "wm_every": wm_every, "wm_k": wm_k,
                                                 "max_steps": max_steps, "only_success": only_success,
                                                 "perception": perception, "camera_size": camera_size},
                              licence="Apache-2.0 (simulated by physical_ai_stack)")
    manifest.add_step("simulate", {"expert": "scripted", "episodes_tried": tried, "first_seed": seed})
    manifest.add_drops({"expert_failed": tried - kept} if only_success and max_steps is None else {})
    manifest.write(output, episodes=kept, frames=writer.frames)
    return {"episodes": kept, "tried": tried, "frames": writer.frames, "expert_success": kept / max(tried, 1),
            "interrupted": interrupted}


class _Interrupts:
    """Ctrl-C / SIGTERM as KeyboardInterrupt, except inside `held()`, where it is raised when the block ends.

    Without this a signal could land between an episode's shard being renamed into place and its entry being
    recorded, leaving a finished episode on disk that the dataset does not list.
    """

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def handle(self, signum: int, frame: Any) -> None:
        """Signal handler."""
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Defer interrupts until the block has run."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            raise KeyboardInterrupt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai collect`."""
    parser.add_argument("scenario", help="amr | arm | vehicle (or factory_floor | arm_cell | vehicle_lane)")
    parser.add_argument("--output", required=True, help="new dataset directory")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="first episode seed (episodes use seed, seed+1, ...)")
    parser.add_argument("--dart-std", type=float, default=1.0, help="scale of executed-action noise (0: none)")
    parser.add_argument("--wm-every", type=int, default=5, help="frames between world-model label rollouts (0: off)")
    parser.add_argument("--wm-k", type=int, default=4, help="candidate chunks per world-model label")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="cap steps per episode (keeps unfinished episodes; for quick tests)")
    parser.add_argument("--perception", choices=("node", "fast"), default="node",
                        help="node: sensors and perception settings of the ROS nodes (config/<robot>.yaml); "
                             "fast: sparse LiDAR, default perception settings (quick experiments)")
    parser.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")
    parser.add_argument("--camera", default="160x120",
                        help="WIDTHxHEIGHT of the scenario camera's images recorded with each frame ('off': none)")
    parser.add_argument("--no-progress", action="store_true")


def parse_size(text: str) -> tuple[int, int] | None:
    """'WIDTHxHEIGHT' -> (width, height); 'off' -> None."""
    if text == "off":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"--camera {text!r}: expected WIDTHxHEIGHT (e.g. 160x120) or 'off'") from exc
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError(f"--camera {text!r}: width and height must be 16-4096 pixels")
    return width, height


def run(args: argparse.Namespace) -> int:
    """Entry point of `physai collect`."""
    try:
        summary = collect(args.scenario, args.output, args.episodes, args.seed, args.dart_std, args.wm_every,
                          args.wm_k, args.max_steps, not args.keep_failures, not args.no_progress,
                          args.perception, parse_size(args.camera))
    except (ValueError, RuntimeError) as exc:
        print(f"physai collect: {exc}", file=sys.stderr)
        return 2
    if summary["interrupted"]:
        print(f"interrupted: kept the {summary['episodes']} finished episodes", file=sys.stderr)
    print(f"COLLECT {args.scenario} episodes={summary['episodes']} frames={summary['frames']} "
          f"expert_success={summary['expert_success']:.3f} output={args.output}")
    return 0

