"""`physai dataset build`: MCAP recordings -> a cleansed, anonymised LeRobot dataset with its provenance.

    physai dataset build recordings/*.mcap --robot amr --output data/amr_rec [--mapping my.yaml] [--workers N]
    physai dataset build recordings/ --robot amr --output data/amr_rec --ray auto      # on a Ray cluster

Per recording (one task each, run in parallel: one process per core by default, or one Ray task per recording
with `--ray auto|ADDRESS`): read it (`mcap_read`: damaged files are an error naming the file, the other recordings
go on), split, resample and cleanse it (`cleanse`), anonymise its images and text (`anonymise`), encode each
camera's frames to MP4. The episodes are then written in recording order (`lerobot_format`), with:
- `meta/cleanse_report.json` and `meta/cleanse_report.png`: every dropped item by reason, per recording;
- `meta/provenance.json`: sources with sha256, tool version and commit, each step with its parameters, drops,
  licence (`provenance`).
Throughput (recorded seconds processed per wall second per worker) is printed on the BUILD line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.data.lerobot_format import DatasetError, DatasetWriter, Feature
from physical_ai.data.mapping import DatasetMapping, load_mapping
from physical_ai.data.mcap_read import RecordingError, read_recording, read_selected

NS = 1_000_000_000


@dataclass
class RecordingOutput:
    """What a worker returns for one recording (picklable: arrays and paths of encoded videos)."""

    path: str
    ok: bool
    error: str = ""
    episodes: list[dict[str, Any]] = field(default_factory=list)   # frames, videos, task, meta
    drops: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)         # episode cuts by reason
    frames_in: int = 0
    messages: int = 0
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    people: dict[str, int] = field(default_factory=dict)           # images masked, by source
    identifiers_replaced: int = 0
    wall_s: float = 0.0


def spec_for(mapping: DatasetMapping, spec_dir: str | None) -> Any:
    """The policy spec the dataset is shaped for: a checkpoint's, or the robot's default."""
    from physical_ai.policy.defaults import default_config
    from physical_ai.policy.spec import load_config

    return load_config(spec_dir) if spec_dir else default_config(mapping.robot, name=f"{mapping.robot}_recorded")


def dataset_features(spec: Any, mapping: DatasetMapping) -> dict[str, Feature]:
    """LeRobot features: the spec's state, obstacle tokens and action, plus one video feature per camera."""
    obs = spec.observation
    unsupported = [name for name in ("parts", "image") if getattr(obs, name) is not None]
    if unsupported:
        raise DatasetError(f"policy spec {spec.name!r} takes {unsupported}: not extracted from recordings yet (state, "
                           "obstacle tokens, action and camera videos are); give --spec a checkpoint without them")
    out: dict[str, Feature] = {}
    if obs.state is not None:
        out["observation.state"] = Feature("float32", (len(obs.state.names),), obs.state.names)
    if obs.obstacles is not None:
        out["observation.obstacles"] = Feature("float32", (obs.obstacles.max_count,
                                                           len(obs.obstacles.features.names)),
                                               obs.obstacles.features.names)
        out["observation.obstacles_mask"] = Feature("float32", (obs.obstacles.max_count,))
    for key, image in mapping.images.items():
        out[key] = Feature("video", (image.height, image.width, 3), ("height", "width", "channels"))
    out["action"] = Feature("float32", (spec.action_dim,), spec.action.names)
    return out


def process_recording(path: str, mapping: DatasetMapping, spec_dir: str | None, work_dir: str, key: bytes | None,
                      salvage: bool = False) -> RecordingOutput:
    """One recording -> cleansed, anonymised episodes with their videos encoded under `work_dir` (a worker task)."""
    import cv2

    from physical_ai.data.anonymise import Scrubber
    from physical_ai.data.cleanse import cleanse_recording
    from physical_ai.data.people import PeopleMasker
    from physical_ai.data.video import encode_video

    start = time.monotonic()
    out = RecordingOutput(path=path, ok=False)
    try:
        rec = read_recording(path, mapping.topics(), salvage=salvage,
                             lazy={image.topic for image in mapping.images.values()})
    except RecordingError as exc:
        out.error = str(exc)
        out.wall_s = time.monotonic() - start
        return out
    out.messages, out.duration_s, out.notes = rec.read_messages, rec.duration_s, rec.notes
    spec = spec_for(mapping, spec_dir)
    if obs_missing := [t for t in (mapping.state_topic, mapping.action_topic) if t not in rec.topics]:
        out.error = f"{path}: topics {obs_missing} not recorded (recorded: {sorted(rec.topics)})"
        return out
    if cameras_missing := [i.topic for i in mapping.images.values() if not rec.counts.get(i.topic)]:
        # every frame would be dropped as stale: say why instead (the recorder leaves raw images out by default)
        out.error = (f"{path}: no messages on the camera topics {cameras_missing} of the mapping's images (record "
                     "them: recorder parameter record_images: true; or build without: a --mapping with 'images: {}')")
        return out
    cleansed = cleanse_recording(rec.messages, mapping, spec)
    del rec
    scrubber = Scrubber(key, mapping.anonymise.identifiers)
    # images: a second pass decodes only those the frames use, each anonymised at full size, then shrunk
    users: dict[int, list[tuple[int, str]]] = {}
    for e, episode in enumerate(cleansed.episodes):
        for cam, messages in episode.images.items():
            for m in messages:
                users.setdefault(m.index, []).append((e, cam))
    maskers = {e: PeopleMasker(mapping, ep.messages) for e, ep in enumerate(cleansed.episodes)}  # per episode clock
    shrunk: dict[tuple[int, str, int], np.ndarray] = {}
    people: Counter = Counter()
    try:
        for message in read_selected(path, users):
            for e, cam in users[message.index]:
                image, used = maskers[e].anonymise(message, cleansed.episodes[e].tf)
                people.update(used)
                source = mapping.images[cam]
                shrunk[(e, cam, message.index)] = cv2.resize(image, (source.width, source.height),
                                                             interpolation=cv2.INTER_AREA)
    except (RecordingError, ValueError) as exc:
        out.error = f"{path}: images: {exc}"
        return out
    for e, episode in enumerate(cleansed.episodes):
        task, n = scrubber.apply(episode.task, mapping.anonymise.text.get(mapping.task_topic, "keep"))
        out.identifiers_replaced += n
        videos = {}
        for cam, messages in episode.images.items():
            target = Path(work_dir) / f"{e:04d}_{cam}.mp4"
            encode_video(np.stack([shrunk[(e, cam, m.index)] for m in messages]), target, mapping.fps)
            videos[cam] = str(target)
        out.episodes.append({"frames": episode.frames, "videos": videos, "task": task, "meta": episode.meta})
    out.drops, out.splits, out.frames_in = dict(cleansed.drops), dict(cleansed.splits), cleansed.frames_in
    out.people = dict(people)
    out.ok = True
    out.wall_s = time.monotonic() - start
    return out


def recording_files(inputs: list[str]) -> list[Path]:
    """The .mcap files named, directories expanded (sorted), each once."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        found = sorted(p.rglob("*.mcap")) if p.is_dir() else [p]
        files += [f for f in found if f not in files]
    if not files:
        raise DatasetError(f"no recordings in {inputs}")
    return files


def run_tasks(files: list[Path], mapping: DatasetMapping, spec_dir: str | None, work: Path, key: bytes | None,
              salvage: bool, workers: int, ray_address: str | None) -> tuple[list[RecordingOutput], int]:
    """Process every recording: in `workers` processes, or one Ray task each on the cluster at `ray_address`.

    Returns the results in recording order and the number of cores they ran on.
    """
    args = [(str(f), mapping, spec_dir, str(work / f"rec{i:05d}"), key, salvage) for i, f in enumerate(files)]
    for a in args:
        Path(a[3]).mkdir(parents=True, exist_ok=True)
    if ray_address is not None:
        import ray

        ray.init(address=ray_address, log_to_driver=False)
        try:
            cores = min(len(files), int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(num_cpus=1)(process_recording)
            return ray.get([task.remote(*a) for a in args]), cores
        finally:
            ray.shutdown()
    if workers <= 1 or len(files) == 1:
        return [process_recording(*a) for a in args], 1
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: workers start with the parent's imports (numpy, OpenCV, the message types), not from scratch; the
    # parent holds no GL context, DDS participant or thread pool at this point
    with ProcessPoolExecutor(max_workers=min(workers, len(files)),
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(process_recording, *zip(*args, strict=True))), min(workers, len(files))


def build(inputs: list[str], output: str | Path, robot: str, mapping_path: str | None = None,
          spec_dir: str | None = None, workers: int | None = None, ray_address: str | None = None,
          licence: str = "", salvage: bool = False, only_success: bool = False) -> dict[str, Any]:
    """Build a dataset from recordings; return the summary (also in the report).

    `only_success` keeps only episodes a success label (`success_topic`) marks successful (others: `task_failed`).
    """
    import physical_ai.data.cleanse
    import physical_ai.data.people  # noqa: F401
    from physical_ai.data.anonymise import Scrubber
    from physical_ai.data.provenance import Manifest
    from physical_ai.data.report import write_report

    started = time.monotonic()
    mapping = load_mapping(robot, mapping_path)
    spec = spec_for(mapping, spec_dir)
    files = recording_files(inputs)
    output = Path(output)
    if (output / "meta" / "info.json").exists():
        raise DatasetError(f"{output}: a dataset already exists here (choose a new --output)")
    key_text = os.environ.get(mapping.anonymise.key_env, "")
    key = key_text.encode() if key_text else None
    scrubber = Scrubber(key, mapping.anonymise.identifiers)
    workers = workers or os.cpu_count() or 1
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=output))
    try:
        results, cores = run_tasks(files, mapping, spec_dir, work, scrubber.key, salvage, workers, ray_address)
        state_frame = "map" if mapping.pose_frame == "map" else ("joint" if robot == "arm" else mapping.pose_frame)
        writer = DatasetWriter(output, robot_type=robot, fps=mapping.fps, features=dataset_features(spec, mapping),
                               extra={"scenario": robot, "embodiment": robot, "spec": spec.to_json(),
                                      "state_frame": state_frame, "perception": "node",
                                      "source": "recordings"})
        manifest = Manifest.start("physai dataset build", {"robot": robot, "mapping": mapping.to_json(),
                                                           "spec": spec_dir or "default", "workers": workers,
                                                           "ray": ray_address, "salvage": salvage,
                                                           "only_success": only_success}, licence)
        failed_files = [r.error for r in results if not r.ok]  # for the operator, naming the files
        for result in results:
            path = result.path
            name = (path if mapping.anonymise.source_paths == "keep"
                    else scrubber.token(str(Path(path).resolve())) + ".mcap")
            # what the dataset keeps names the recording by its keyed hash only
            result.path, result.error = name, _redact(result.error, path, name)
            result.notes = [_redact(n, path, name) for n in result.notes]
            if not result.ok:
                manifest.add_drops({"recording_unreadable": 1}, [{"recording": name, "error": result.error}])
                continue
            manifest.add_source(path, messages=result.messages, duration_s=round(result.duration_s, 3),
                                notes=result.notes)
            manifest.sources[-1]["path"] = name
            if only_success:
                failed = [ep for ep in result.episodes if not ep["meta"].get("success", False)]
                result.drops = {**result.drops, **({"task_failed": len(failed)} if failed else {})}
                result.episodes = [ep for ep in result.episodes if ep["meta"].get("success", False)]
            manifest.add_drops(result.drops)
            for ep in result.episodes:
                writer.add_episode(ep["frames"], ep["task"], {**ep["meta"], "source": name},
                                   encoded_videos=ep["videos"])
        if not writer.episodes:
            raise DatasetError("no episode survived cleansing: " + "; ".join(
                r.error or f"{r.path}: drops {r.drops}" for r in results))
        for step, params in (("ingest", {"topics": sorted(mapping.topics()), "salvage": salvage}),
                             ("split", {"reset_topic": mapping.reset_topic, "task_topic": mapping.task_topic,
                                        "idle_gap_s": mapping.idle_gap_s, "clock_jump_back": True}),
                             ("resample", {"fps": mapping.fps, "max_age_s": mapping.max_age_s,
                                           "image_max_age_s": mapping.image_max_age_s,
                                           "action_offset_s": mapping.action_offset_s}),
                             ("cleanse", {"min_episode_frames": mapping.min_episode_frames,
                                          "max_message_loss": mapping.max_message_loss,
                                          "joint_limits": mapping.joint_limits}),
                             ("anonymise", {**mapping.to_json()["anonymise"], "key": "random per build"
                                            if key is None else f"from ${mapping.anonymise.key_env}"}),
                             ("standardise", {"format": "LeRobot v3.0", "video": "H.264 MP4"})):
            manifest.add_step(step, params)
        writer.finish()
        summary = _summary(results, writer, started, cores)
        write_report(output, summary, results, manifest.drops)
        manifest.write(output, episodes=len(writer.episodes), frames=writer.frames)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**summary, "failed": failed_files}


def _redact(text: str, path: str, name: str) -> str:
    return text.replace(str(path), name) if name != path else text


def _summary(results: list[RecordingOutput], writer: DatasetWriter, started: float, workers: int) -> dict[str, Any]:
    wall = time.monotonic() - started
    recorded = sum(r.duration_s for r in results if r.ok)
    people: Counter = Counter()
    splits: Counter = Counter()
    for r in results:
        people.update(r.people)
        splits.update(r.splits)
    return {"recordings": len(results), "failed": [r.error for r in results if not r.ok],
            "episodes": len(writer.episodes), "frames": writer.frames,
            "frames_considered": sum(r.frames_in for r in results), "recorded_s": round(recorded, 2),
            "wall_s": round(wall, 2), "workers": workers,
            "throughput_per_core": round(recorded / wall / workers, 3) if wall > 0 else 0.0,
            "task_wall_s": [round(r.wall_s, 2) for r in results], "people_masks": dict(people),
            "episode_splits": dict(splits),
            "identifiers_replaced": sum(r.identifiers_replaced for r in results)}


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai dataset build`."""
    parser.add_argument("recordings", nargs="+", help="MCAP files or directories of them")
    parser.add_argument("--robot", required=True, help="amr | arm | vehicle: default topics from config/<robot>.yaml")
    parser.add_argument("--output", required=True, help="new dataset directory")
    parser.add_argument("--mapping", default=None, help="YAML overriding the robot's topic->feature mapping")
    parser.add_argument("--spec", default=None, help="shape the dataset for this checkpoint's spec (default: the "
                                                     "robot's default policy spec)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                        help="run one task per recording on a Ray cluster (auto: the one this machine is part of; "
                             "the recordings and --output must be on storage every node sees)")
    parser.add_argument("--licence", default="", help="licence of the recordings, recorded in the manifest")
    parser.add_argument("--only-success", action="store_true",
                        help="keep only episodes the success label (mapping success_topic) marks successful")
    parser.add_argument("--salvage", action="store_true",
                        help="keep the complete messages of truncated recordings instead of skipping them")


def run_build(args: argparse.Namespace) -> int:
    """Entry point of `physai dataset build`: 0 if every recording was used, 3 if some were skipped."""
    summary = build(args.recordings, args.output, args.robot, args.mapping, args.spec, args.workers, args.ray,
                    args.licence, args.salvage, args.only_success)
    for error in summary["failed"]:
        print(f"physai dataset build: skipped {error}", file=sys.stderr)
    print(f"BUILD episodes={summary['episodes']} frames={summary['frames']} recordings={summary['recordings']} "
          f"failed={len(summary['failed'])} recorded_s={summary['recorded_s']} wall_s={summary['wall_s']} "
          f"throughput_per_core={summary['throughput_per_core']} output={args.output}")
    print(json.dumps({"drops": json.loads((Path(args.output) / "meta" / "cleanse_report.json").read_text())
                      ["drops"]}))
    return 3 if summary["failed"] else 0
