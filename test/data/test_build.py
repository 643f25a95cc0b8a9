"""`physai dataset build`: recordings to cleansed, anonymised LeRobot datasets, damaged files, drops, provenance."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physical_ai.data.anonymise import Scrubber
from physical_ai.data.build import build
from physical_ai.data.lerobot_format import DatasetError
from physical_ai.data.mcap_read import RecordingError, read_recording
from physical_ai.data.provenance import MANIFEST_PATH, sha256_file
from physical_ai.data.sim_recording import record_simulated
from physical_ai.recording import ros2msg_schema
from physical_ai.training.dataset import open_dataset

NS = 1_000_000_000
TASK = "drive to dock 3 of plant-berlin.example.com with robot SN AMR-0042X"
MAPPING = """
images: {observation.images.front: {topic: /camera/color/image_raw, width: 32, height: 24}}
max_age_s: 0.3
min_episode_frames: 5
anonymise: {identifiers: [Berlin]}
"""


def _stamp(ns: int) -> dict[str, int]:
    return {"sec": ns // NS, "nanosec": ns % NS}


def _tf(parent: str, child: str, ns: int, x: float = 0.0, z: float = 0.0) -> dict:
    return {"header": {"stamp": _stamp(ns), "frame_id": parent}, "child_frame_id": child,
            "transform": {"translation": {"x": x, "y": 0.0, "z": z},
                          "rotation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}}


def write_synthetic(path: Path, episodes: int = 2, seconds: float | list[float] = 6.0,
                    nan_odom: tuple[float, float] | None = None, obstacle_gap: tuple[float, float] | None = None,
                    success: list[bool] | None = None, late_obstacles: bool = False,
                    chunks_until: list[float] | None = None) -> None:
    """A small AMR recording with exactly known defects: odometry 20 Hz, obstacles/images 10 Hz, commands 20 Hz.

    `seconds`: each episode's length (one for all, or one per episode). `late_obstacles`: the previous episode's
    last obstacle message is recorded again 50 ms into the next one (in flight across the reset, old clock).
    `chunks_until`: per episode, a policy's ActionChunk (1 s of 10 steps, linear_x 0.2 + 0.01 * step, angular_z -0.3)
    every 0.5 s up to this time."""
    from mcap_ros2.writer import Writer

    types = {"/odom": "nav_msgs/msg/Odometry", "/tf": "tf2_msgs/msg/TFMessage",
             "/tf_static": "tf2_msgs/msg/TFMessage", "/cmd_vel": "geometry_msgs/msg/Twist",
             "/perception/obstacles": "physical_ai_stack/msg/ObstacleArray",
             "/camera/color/image_raw": "sensor_msgs/msg/Image",
             "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
             "/policy/instruction": "std_msgs/msg/String", "/sim/reset": "std_msgs/msg/Int64",
             "/sim/ground_truth": "physical_ai_stack/msg/SimGroundTruth",
             "/policy/action_chunk": "physical_ai_stack/msg/ActionChunk"}
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        w = Writer(f, chunk_size=32 * 1024)  # several chunks: a truncated copy keeps the complete ones
        schemas = {t: w.register_msgdef(ty, ros2msg_schema(ty)) for t, ty in types.items()}
        last_obstacles: dict = {}
        for e in range(episodes):
            w.write_message("/sim/reset", schemas["/sim/reset"], {"data": e}, 0, 0)
            w.write_message("/policy/instruction", schemas["/policy/instruction"], {"data": TASK}, 0, 0)
            w.write_message("/tf_static", schemas["/tf_static"], {"transforms": [
                _tf("map", "odom", 0, x=1.0), _tf("base_link", "camera_color_optical_frame", 0, z=0.5)]}, 0, 0)
            length = seconds[e] if isinstance(seconds, list) else seconds
            late = last_obstacles if late_obstacles and e else None
            for k in range(int(length * 20) + 1):
                ns = k * NS // 20
                t = ns / NS
                if late is not None and k == 1:
                    w.write_message("/perception/obstacles", schemas["/perception/obstacles"], late, ns, ns)
                header = {"stamp": _stamp(ns), "frame_id": "odom"}
                vx = float("nan") if nan_odom and e == 1 and nan_odom[0] <= t <= nan_odom[1] else 0.5
                pose = {"position": {"x": 0.5 * t, "y": 0.0, "z": 0.0},
                        "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}
                twist = {"linear": {"x": vx, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}}
                w.write_message("/odom", schemas["/odom"], {
                    "header": header, "child_frame_id": "base_link", "pose": {"pose": pose, "covariance": [0.0] * 36},
                    "twist": {"twist": twist, "covariance": [0.0] * 36}}, ns, ns)
                w.write_message("/tf", schemas["/tf"], {"transforms": [_tf("odom", "base_link", ns, x=0.5 * t)]},
                                ns, ns)
                w.write_message("/cmd_vel", schemas["/cmd_vel"], {"linear": {"x": 0.5, "y": 0.0, "z": 0.0},
                                                                  "angular": {"x": 0.0, "y": 0.0, "z": 0.1}}, ns, ns)
                if chunks_until is not None and k % 10 == 0 and t <= chunks_until[e]:
                    w.write_message("/policy/action_chunk", schemas["/policy/action_chunk"], {
                        "header": header, "embodiment": "amr", "action_names": ["angular_z", "linear_x"],
                        "start_time": _stamp(ns), "dt": 0.1, "horizon": 10,
                        "values": [v for step in range(10) for v in (-0.3, 0.2 + 0.01 * step)], "model_id": "test",
                        "inference_latency_ms": 1.0, "sequence": k // 10}, ns, ns)
                if k % 2:
                    continue
                gap = obstacle_gap and e == 1 and obstacle_gap[0] < t < obstacle_gap[1]
                if not gap:
                    last_obstacles = {
                        "header": {"stamp": _stamp(ns), "frame_id": "base_link"}, "sensors_alive": 1,
                        "degraded": False,
                        "obstacles": [{"id": 1, "classification": 1, "confidence": 0.9,
                                       "pose": {"position": {"x": 3.0, "y": 0.0, "z": 0.9},
                                                "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
                                       "size": {"x": 0.4, "y": 0.4, "z": 1.8},
                                       "velocity": {"x": 0.0, "y": 0.0, "z": 0.0},
                                       "sensors": 1, "track_age": 5, "prediction_dt": 0.0,
                                       "predicted_positions": []}]}
                    w.write_message("/perception/obstacles", schemas["/perception/obstacles"], last_obstacles, ns, ns)
                image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
                cam = {"stamp": _stamp(ns), "frame_id": "camera_color_optical_frame"}
                w.write_message("/camera/color/camera_info", schemas["/camera/color/camera_info"], {
                    "header": cam, "height": 48, "width": 64, "distortion_model": "plumb_bob", "d": [0.0] * 5,
                    "k": [40.0, 0.0, 31.5, 0.0, 40.0, 23.5, 0.0, 0.0, 1.0], "r": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                    "p": [40.0, 0.0, 31.5, 0.0, 0.0, 40.0, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0], "binning_x": 0,
                    "binning_y": 0, "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0,
                                            "do_rectify": False}}, ns, ns)
                w.write_message("/camera/color/image_raw", schemas["/camera/color/image_raw"], {
                    "header": cam, "height": 48, "width": 64, "encoding": "rgb8", "is_bigendian": 0, "step": 192,
                    "data": image.tobytes()}, ns, ns)
            if success is not None:  # the simulator's verdict at the episode's end
                w.write_message("/sim/ground_truth", schemas["/sim/ground_truth"], {
                    "header": {"stamp": _stamp(ns), "frame_id": "world"}, "scenario": "amr", "body_names": [],
                    "body_poses": [], "body_twists": [], "collisions": 0, "min_person_clearance_m": 5.0,
                    "progress": 1.0, "task_success": success[e], "episode_done": True}, ns, ns)
        w.finish()


def unindexed_copy(source: Path, target: Path) -> None:
    """The same messages in an MCAP without summary or index (as some writers produce)."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import IndexType, Writer

    with open(source, "rb") as f, open(target, "wb") as out:
        w = Writer(out, index_types=IndexType.NONE, repeat_channels=False, repeat_schemas=False,
                   use_statistics=False, use_summary_offsets=False)
        w.start(profile="ros2", library="test")
        for r in StreamReader(f).records:
            if isinstance(r, Schema):
                w.register_schema(r.name, r.encoding, r.data)
            elif isinstance(r, Channel):
                w.register_channel(r.topic, r.message_encoding, r.schema_id, r.metadata)
            elif isinstance(r, Message):
                w.add_message(r.channel_id, r.log_time, r.data, r.publish_time, r.sequence)
        w.finish()


def mapping_file(tmp_path: Path) -> str:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING)
    return str(path)


def test_build_cleanses_with_every_drop_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHYSAI_ANON_KEY", "test-key")
    rec = tmp_path / "site" / "robot-sn1234" / "run.mcap"
    rec.parent.mkdir(parents=True)
    write_synthetic(rec, nan_odom=(2.0, 2.3), obstacle_gap=(4.0, 4.6))
    summary = build([str(rec)], tmp_path / "ds", "amr", mapping_file(tmp_path), workers=1)
    report = json.loads((tmp_path / "ds" / "meta" / "cleanse_report.json").read_text())
    # episode 0: 61 clean frames; episode 1: 4 NaN-odometry frames (2.0-2.3 s) and 2 stale-obstacle frames
    # (4.4, 4.5 s: the newest obstacles are > 0.3 s old) split it into three pieces of 20, 20 and 15 frames
    assert report["drops"] == {"non_finite:observation.state": 4, "stale:/perception/obstacles": 2}
    assert summary["episodes"] == 4 and summary["frames"] == 61 + 20 + 20 + 15
    assert (tmp_path / "ds" / "meta" / "cleanse_report.png").stat().st_size > 5000
    ds = open_dataset(tmp_path / "ds")
    assert [int(e["length"]) for e in ds.episodes] == [61, 20, 20, 15]
    first = ds.load_episode(0)
    np.testing.assert_allclose(first["observation.state"][:, 0], 1.0 + 0.05 * np.arange(61), atol=1e-5)  # map frame
    np.testing.assert_allclose(first["action"], np.tile([0.5, 0.1], (61, 1)), atol=1e-6)
    assert first["observation.images.front"].shape == (61, 24, 32, 3)
    assert first["observation.obstacles_mask"].sum(1).tolist() == [1.0] * 61
    # identifiers in the task replaced by keyed hashes; the same identifier, the same token
    scrub = Scrubber(b"test-key", ("Berlin",))
    task = ds.task(0)
    assert "berlin" not in task.lower() and "AMR-0042X" not in task and task.startswith("drive to dock 3 of ")
    assert task == scrub.scrub(TASK)[0] and scrub.token("SN AMR-0042X") in task
    # provenance: the source by content hash, its path only as a keyed hash
    manifest = json.loads((tmp_path / "ds" / MANIFEST_PATH).read_text())
    (source,) = manifest["sources"]
    assert source["sha256"] == sha256_file(rec) and "robot-sn1234" not in json.dumps(manifest)
    assert [s["name"] for s in manifest["steps"]] == ["ingest", "split", "resample", "cleanse", "anonymise",
                                                      "standardise"]
    assert manifest["drops"]["by_reason"] == report["drops"] and manifest["tool"]["version"]
    assert ds.episodes[0]["source"] == source["path"]
    assert "robot-sn1234" not in (tmp_path / "ds" / "meta" / "cleanse_report.json").read_text()
    assert report["summary"]["episode_splits"] == {"reset": 1}


def test_the_policys_chunks_as_actions_give_the_step_in_force_and_stop_where_the_plan_runs_out(
        tmp_path: Path) -> None:
    rec = tmp_path / "run.mcap"
    write_synthetic(rec, chunks_until=[6.0, 3.0])
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING + "action_topic: /policy/action_chunk\n")
    summary = build([str(rec)], tmp_path / "ds", "amr", str(mapping), workers=1)
    report = json.loads((tmp_path / "ds" / "meta" / "cleanse_report.json").read_text())
    # episode 1's last chunk (3.0 s) plans up to 4.0 s: the frames whose action falls later (4.0-6.0 s) are stale
    assert report["drops"] == {"stale:/policy/action_chunk": 21} and summary["frames"] == 61 + 40
    ds = open_dataset(tmp_path / "ds")
    for e, n, until in ((0, 61, 6 * NS), (1, 40, 3 * NS)):
        t_action = np.arange(n) * (NS // 10) + NS // 20                     # frame time + action_offset_s
        start = np.minimum(t_action // (NS // 2) * (NS // 2), until)        # the newest chunk's start
        step = (t_action - start) // (NS // 10)
        expected = np.column_stack([0.2 + 0.01 * step, np.full(n, -0.3)])  # the spec's order: linear_x, angular_z
        np.testing.assert_allclose(ds.load_episode(e)["action"], expected, atol=1e-6)


def test_damaged_recordings_are_named_and_nothing_else_is_lost(tmp_path: Path) -> None:
    good = tmp_path / "good.mcap"
    write_synthetic(good, episodes=1)
    corrupted, truncated = tmp_path / "corrupted.mcap", tmp_path / "truncated.mcap"
    unindexed = tmp_path / "unindexed.mcap"
    data = bytearray(good.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    corrupted.write_bytes(bytes(data))
    truncated.write_bytes(good.read_bytes()[: len(data) * 6 // 10])
    unindexed_copy(good, unindexed)
    with pytest.raises(RecordingError, match=r"corrupted\.mcap: .*corrupted"):
        read_recording(corrupted)
    with pytest.raises(RecordingError, match=r"truncated\.mcap: truncated.*after \d+ messages"):
        read_recording(truncated)
    salvaged = read_recording(truncated, salvage=True)
    assert 0 < salvaged.read_messages < read_recording(good).read_messages and "salvaged" in salvaged.notes[0]
    full = read_recording(unindexed)
    assert full.read_messages == read_recording(good).read_messages and not full.indexed
    with pytest.raises(RecordingError, match=r"nothing\.mcap: recording missing"):
        read_recording(tmp_path / "nothing.mcap")
    (tmp_path / "text.mcap").write_text("not an mcap file at all")
    with pytest.raises(RecordingError, match=r"text\.mcap: not an MCAP file"):
        read_recording(tmp_path / "text.mcap")
    # through the CLI: the damaged files named, the good and unindexed ones built, exit 3
    out = subprocess.run([sys.executable, "-m", "physical_ai.cli", "dataset", "build", str(good), str(corrupted),
                          str(truncated), str(unindexed), "--robot", "amr", "--output", str(tmp_path / "ds"),
                          "--mapping", mapping_file(tmp_path), "--workers", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr
    assert "skipped" in out.stderr and "corrupted.mcap" in out.stderr and "truncated.mcap" in out.stderr
    assert "BUILD episodes=2 frames=122 recordings=4 failed=2" in out.stdout
    report = json.loads((tmp_path / "ds" / "meta" / "cleanse_report.json").read_text())
    assert report["drops"] == {"recording_unreadable": 2}
    assert "corrupted.mcap" not in json.dumps(report)  # the dataset names recordings by their keyed hash
    ds = open_dataset(tmp_path / "ds")
    np.testing.assert_array_equal(ds.load_episode(0)["action"], ds.load_episode(1)["action"])


def test_simulated_run_people_are_masked(tmp_path: Path) -> None:
    """The stack's person tracks, projected, cover the workers' ground-truth pixels (the benchmark, small)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from dataset_bench import coverage

    rec = tmp_path / "sim.mcap"
    record_simulated(rec, episodes=1, seed=500003, max_steps=60, size=(320, 240), truth=tmp_path / "truth.npz")
    figures = coverage(rec, tmp_path / "truth.npz")
    assert figures["images_with_people"] >= 20 and figures["person_pixels"] > 10_000
    assert figures["coverage_combined"] >= 0.99
    assert figures["other_combined"] < 0.5  # masks are people-sized, not whole images
    out = build([str(rec)], tmp_path / "ds", "amr", workers=1)
    assert out["people_masks"]["lidar"] >= 20
    ds = open_dataset(tmp_path / "ds")
    assert ds.load_episode(0)["observation.images.front"].shape[1:] == (120, 160, 3)


def test_only_successful_episodes_are_kept(tmp_path: Path) -> None:
    rec = tmp_path / "r.mcap"
    write_synthetic(rec, episodes=3, seconds=2.0, success=[True, False, True])
    summary = build([str(rec)], tmp_path / "ds", "amr", mapping_file(tmp_path), workers=1, only_success=True)
    assert summary["episodes"] == 2
    ds = open_dataset(tmp_path / "ds")
    assert [e["success"] for e in ds.episodes] == [True, True]
    assert [e["recording_episode"] for e in ds.episodes] == [0, 2]
    assert json.loads((tmp_path / "ds" / "meta" / "cleanse_report.json").read_text())["drops"] == {"task_failed": 1}


def test_message_loss_is_measured_over_the_episodes_own_span(tmp_path: Path) -> None:
    """A 2 s episode after an 8 s one receives the old episode's last obstacles (stamped 8.0 s) after the reset: read
    over all its obstacle messages that is a 6 s gap (73 % of the messages lost) and the episode was dropped."""
    rec = tmp_path / "r.mcap"
    write_synthetic(rec, episodes=2, seconds=[8.0, 2.0], late_obstacles=True)
    summary = build([str(rec)], tmp_path / "ds", "amr", mapping_file(tmp_path), workers=1)
    assert json.loads((tmp_path / "ds" / "meta" / "cleanse_report.json").read_text())["drops"] == {}
    assert summary["episodes"] == 2 and summary["frames"] == 81 + 21


def test_build_refuses_bad_mappings(tmp_path: Path) -> None:
    rec = tmp_path / "r.mcap"
    write_synthetic(rec, episodes=1, seconds=1.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("fsp: 10\n")
    with pytest.raises(DatasetError, match=r"unknown keys \['fsp'\]"):
        build([str(rec)], tmp_path / "a", "amr", str(bad))
    bad.write_text("anonymise: {people: pixelate}\n")
    with pytest.raises(DatasetError, match=r"anonymise\.people 'pixelate'"):
        build([str(rec)], tmp_path / "b", "amr", str(bad))
    with pytest.raises(DatasetError, match="no episode survived"):  # 1 s is shorter than 20 frames
        build([str(rec)], tmp_path / "c", "amr")
    bad.write_text("images: {observation.images.front: {topic: /camera/rear/image_raw}}\n")  # never recorded
    with pytest.raises(DatasetError, match=r"no messages on the camera topics \['/camera/rear/image_raw'\].*"
                                           "record_images: true"):
        build([str(rec)], tmp_path / "d", "amr", str(bad))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_on_a_local_ray_cluster(tmp_path: Path) -> None:
    """One Ray task per recording on a cluster this test starts (loopback only), the same dataset as locally."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.skip("ray not installed (pip install -e .[ray])")
    recordings = []
    for i in range(3):
        recordings.append(tmp_path / f"r{i}.mcap")
        write_synthetic(recordings[-1], episodes=1, seconds=3.0)
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    start = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=env)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        t0 = time.monotonic()
        summary = build([str(r) for r in recordings], tmp_path / "ray_ds", "amr", mapping_file(tmp_path),
                        ray_address=f"127.0.0.1:{port}")
        assert time.monotonic() - t0 < 240
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120, env=env)
    local = build([str(r) for r in recordings], tmp_path / "local_ds", "amr", mapping_file(tmp_path), workers=1)
    assert summary["episodes"] == local["episodes"] == 3 and summary["frames"] == local["frames"]
    a, b = open_dataset(tmp_path / "ray_ds"), open_dataset(tmp_path / "local_ds")
    for e in range(3):
        np.testing.assert_array_equal(a.load_episode(e)["observation.state"], b.load_episode(e)["observation.state"])
    manifest = json.loads((tmp_path / "ray_ds" / MANIFEST_PATH).read_text())
    assert manifest["parameters"]["ray"] == f"127.0.0.1:{port}"
    shutil.rmtree(tmp_path / "ray_ds")


def test_policy_trained_on_built_dataset_cites_its_manifest(tmp_path: Path) -> None:
    """physai train reads a built dataset; the checkpoint's config and model card cite the provenance manifest."""
    from physical_ai.policy.spec import load_config
    from physical_ai.training.train import train

    rec = tmp_path / "r.mcap"
    write_synthetic(rec, episodes=2, seconds=3.0)
    build([str(rec)], tmp_path / "ds", "amr", mapping_file(tmp_path), workers=1, licence="CC-BY-4.0")
    arch = {"type": "chunk_transformer", "d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32,
            "image_channels": [8], "image_grid": 2}
    summary = train(tmp_path / "ds", tmp_path / "model", "from_recordings", arch, steps=3, batch_size=8,
                    progress_bar=False)
    assert summary["frames"] == 2 * 31 and np.isfinite(summary["final_loss"])
    manifest_sha = sha256_file(tmp_path / "ds" / MANIFEST_PATH)
    (citation,) = load_config(tmp_path / "model").extra["training"]["datasets"]
    assert citation["manifest_sha256"] == manifest_sha and citation["licence"] == "CC-BY-4.0"
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert manifest_sha in card and "CC-BY-4.0" in card and "meta/provenance.json" in card


def test_compressed_and_raw_images_decode_alike() -> None:
    """Camera drivers often record sensor_msgs/CompressedImage: PNG and raw rgb8/bgr8 give the same pixels."""
    from types import SimpleNamespace

    import cv2

    from physical_ai.data.people import rgb_from_message

    rgb = np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    raw = SimpleNamespace(encoding="rgb8", height=12, width=16, step=48, is_bigendian=0, data=rgb.tobytes())
    bgr = SimpleNamespace(encoding="bgr8", height=12, width=16, step=48, is_bigendian=0,
                          data=rgb[:, :, ::-1].tobytes())
    png = SimpleNamespace(format="png", data=cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
    for msg in (raw, bgr, png):
        np.testing.assert_array_equal(rgb_from_message(msg), rgb)
    with pytest.raises(ValueError, match="does not decode"):
        rgb_from_message(SimpleNamespace(format="jpeg", data=b"not a jpeg"))


def test_reset_recorded_before_the_episodes_last_messages() -> None:
    """The harness resets on the done/success ground truth, but the recorder may get the reset first: the ending
    episode's in-flight messages (its success verdict among them) stay with it, and the new one starts clean."""
    from collections import Counter
    from types import SimpleNamespace

    from physical_ai.data.cleanse import split_episodes, success_verdicts, verdict_for
    from physical_ai.data.mapping import load_mapping
    from physical_ai.data.mcap_read import Message

    mapping = load_mapping("amr")

    def msg(topic: str, t: float, **fields: object) -> Message:
        return Message(topic, "", int(t * NS), int(t * NS), SimpleNamespace(**fields))

    stream = [msg("/odom", 9.9), msg("/sim/ground_truth", 9.9, task_success=False),
              msg("/sim/reset", 10.0, data=1),                               # recorded before ...
              msg("/odom", 10.0), msg("/sim/ground_truth", 10.0, task_success=True),  # ... the old episode's end
              msg("/sim/ground_truth", 0.0, task_success=False),              # the new episode's first verdict
              msg("/odom", 0.0), msg("/odom", 0.02)]
    splits: Counter = Counter()
    first, second = split_episodes(stream, mapping, splits)
    assert splits == {"reset": 1}
    assert [m.stamp_ns for m in first if m.topic == "/odom"] == [int(9.9 * NS), int(10.0 * NS)]
    assert [m.stamp_ns for m in second if m.topic == "/odom"] == [0, int(0.02 * NS)]
    # the success label: the ending episode's run of verdicts ends with its success, the new one's has none yet
    verdicts = success_verdicts(stream, mapping)
    positions = {id(m): i for i, m in enumerate(stream)}
    assert verdict_for(first, positions, verdicts) is True and verdict_for(second, positions, verdicts) is False


def test_system_clock_log_times_and_a_late_reset() -> None:
    """Our recorder logs on the system clock while the robot stamps in simulation time; the harness's reset can be
    recorded just after the new episode's first state, the simulator's new map -> odom (/tf_static) just before it.
    Headerless commands get simulation times, the episodes split once (at the reset), each with its own map frame,
    and the new episode's labels form one run."""
    from collections import Counter
    from types import SimpleNamespace

    from physical_ai.data.cleanse import align_to_stamps, split_episodes, success_verdicts, verdict_for
    from physical_ai.data.mapping import load_mapping
    from physical_ai.data.mcap_read import Message

    mapping = load_mapping("amr")
    wall = 1_700_000_000 * NS  # system clock

    def msg(topic: str, log_s: float, stamp_s: float | None, **fields: object) -> Message:
        return Message(topic, "", wall + int(log_s * NS), None if stamp_s is None else int(stamp_s * NS),
                       SimpleNamespace(**fields))

    stream = [msg("/tf_static", 0.0, None, name="map->odom 0"),
              msg("/odom", 0.10, 9.8), msg("/cmd_vel", 0.14, None), msg("/odom", 0.20, 9.9),   # sim at 1x
              msg("/sim/ground_truth", 0.20, 9.9, task_success=False),
              msg("/tf_static", 0.21, None, name="map->odom 1"),                  # the simulator reset ...
              msg("/odom", 0.22, 0.0), msg("/sim/ground_truth", 0.22, 0.0, task_success=False),
              msg("/sim/reset", 0.23, None, data=1),                              # ... then the harness's reset
              msg("/odom", 0.42, 0.1), msg("/cmd_vel", 0.47, None),               # sim at 0.5x
              msg("/odom", 1.82, 0.8), msg("/sim/ground_truth", 1.82, 0.8, task_success=False),
              msg("/odom", 3.22, 1.5), msg("/sim/ground_truth", 3.22, 1.5, task_success=True)]
    align_to_stamps(stream, "/odom")
    commands = [m for m in stream if m.topic == "/cmd_vel"]
    assert [c.time_ns for c in commands] == [int(9.84 * NS), int(0.125 * NS)]  # between two odometry stamps
    splits: Counter = Counter()
    first, second = split_episodes(stream, mapping, splits)
    assert splits == {"reset": 1}
    assert [m.msg.name for m in first if m.topic == "/tf_static"] == ["map->odom 0"]
    assert [m.msg.name for m in second if m.topic == "/tf_static"] == ["map->odom 0", "map->odom 1"]  # newest last
    assert [m.stamp_ns for m in second if m.topic == "/odom"] == [0, int(0.1 * NS), int(0.8 * NS), int(1.5 * NS)]
    verdicts = success_verdicts(stream, mapping)
    positions = {id(m): i for i, m in enumerate(stream)}
    assert len(verdicts) == 2
    assert verdict_for(first, positions, verdicts) is False and verdict_for(second, positions, verdicts) is True
    # the other order: the reset recorded first, then a state the simulator stamped before it took the reset
    stream = [msg("/tf_static", 0.0, None, name="map->odom 0"), msg("/odom", 0.10, 9.8), msg("/odom", 0.20, 9.9),
              msg("/sim/reset", 0.205, None, data=1), msg("/odom", 0.22, 9.92),
              msg("/tf_static", 0.23, None, name="map->odom 1"), msg("/odom", 0.24, 0.0), msg("/odom", 0.26, 0.02)]
    align_to_stamps(stream, "/odom")
    splits = Counter()
    first, second = split_episodes(stream, mapping, splits)
    assert splits == {"reset": 1}
    assert [m.stamp_ns for m in first if m.topic == "/odom"] == [int(9.8 * NS), int(9.9 * NS), int(9.92 * NS)]
    assert [m.msg.name for m in first if m.topic == "/tf_static"] == ["map->odom 0"]
    assert [m.msg.name for m in second if m.topic == "/tf_static"] == ["map->odom 0", "map->odom 1"]
    # with send times kept (our recorder, rosbag2 since Jazzy): the harness's reset, sent before the simulator took
    # it, recorded after the new episode's first state; its send time lands on the old clock, just after the jump's
    # last state, and it is still that jump's reset

    def sent(topic: str, log_s: float, sent_s: float, stamp_s: float | None, **fields: object) -> Message:
        m = msg(topic, log_s, stamp_s, **fields)
        m.publish_time_ns = wall + int(sent_s * NS)
        return m

    stream = [sent("/tf_static", 0.0, 0.0, None, name="map->odom 0"), sent("/odom", 0.101, 0.10, 9.8),
              sent("/odom", 0.201, 0.20, 9.9), sent("/sim/ground_truth", 0.202, 0.20, 9.9, task_success=False),
              sent("/tf_static", 0.215, 0.21, None, name="map->odom 1"), sent("/odom", 0.221, 0.22, 0.0),
              sent("/sim/reset", 0.23, 0.205, None, data=1), sent("/cmd_vel", 0.24, 0.239, None),
              sent("/odom", 0.421, 0.42, 0.2), sent("/sim/ground_truth", 0.422, 0.42, 0.2, task_success=False),
              sent("/odom", 0.621, 0.62, 0.4), sent("/sim/ground_truth", 0.622, 0.62, 0.4, task_success=True)]
    align_to_stamps(stream, "/odom")
    assert [m.time_ns for m in stream if m.topic in ("/sim/reset", "/cmd_vel")] == [int(9.905 * NS), int(0.019 * NS)]
    splits = Counter()
    first, second = split_episodes(stream, mapping, splits)
    assert splits == {"reset": 1}
    assert [m.stamp_ns for m in first if m.topic == "/odom"] == [int(9.8 * NS), int(9.9 * NS)]
    assert [m.stamp_ns for m in second if m.topic == "/odom"] == [0, int(0.2 * NS), int(0.4 * NS)]
    verdicts = success_verdicts(stream, mapping)
    positions = {id(m): i for i, m in enumerate(stream)}
    assert verdict_for(first, positions, verdicts) is False and verdict_for(second, positions, verdicts) is True


def test_recorded_clock_times_headerless_messages_through_a_stall() -> None:
    """With /clock recorded, a command gets the simulation time its sender read: from the newest clock sent before
    it, running on at rate 1 up to the next one. Through a simulator stall it stays within a step of the time the
    simulator took it up at (interpolating between odometry messages misplaces it), and clocks the recorder dropped
    do not hold it back."""
    from types import SimpleNamespace

    from physical_ai.data.cleanse import align_to_stamps
    from physical_ai.data.mapping import load_mapping
    from physical_ai.data.mcap_read import Message

    wall = 1_700_000_000 * NS

    def sent(topic: str, sent_s: float, stamp_s: float | None = None, clock_s: float | None = None) -> Message:
        clock = None if clock_s is None else SimpleNamespace(sec=int(clock_s), nanosec=round(clock_s % 1 * NS))
        fields = {} if clock is None else {"clock": clock}
        m = Message(topic, "", wall + int((sent_s + 0.002) * NS), None if stamp_s is None else int(stamp_s * NS),
                    SimpleNamespace(**fields))
        m.publish_time_ns = wall + int(sent_s * NS)
        return m

    def stream() -> list[Message]:
        # the simulator steps 10 ms per /clock at 1x; after publishing 5.02 it stalls 60 ms (rendering a camera
        # frame on a loaded machine), then catches up: a command arriving meanwhile is taken up from 5.02. Later
        # the recorder drops the clocks 5.07-5.15 (best effort, a busy recorder)
        out = [sent("/cmd_vel", 0.995)]  # sent before the first clock
        for sent_s, sim_s in [(1.00, 5.00), (1.01, 5.01), (1.02, 5.02), (1.08, 5.03), (1.081, 5.04), (1.082, 5.05),
                              (1.092, 5.06), (1.192, 5.16)]:
            out.append(sent("/clock", sent_s, clock_s=sim_s))
            if round(sim_s * 100) % 2 == 0:
                out.append(sent("/odom", sent_s + 0.0005, stamp_s=sim_s))
        return [*out, sent("/cmd_vel", 1.05), sent("/cmd_vel", 1.0815), sent("/cmd_vel", 1.152)]

    assert "/clock" in load_mapping("amr").topics()
    messages = stream()
    align_to_stamps(messages, "/odom", "/clock")
    times = [m.time_ns for m in messages if m.topic == "/cmd_vel"]
    assert times[0] == round(4.995 * NS)
    assert 0 <= times[1] - round(5.02 * NS) <= NS // 100  # within the one step the stall held
    assert times[2] == round(5.0405 * NS) and times[3] == round(5.12 * NS)
    messages = stream()  # without the clock: interpolated across the stall, ~10 ms after the sim time it was taken at
    align_to_stamps(messages, "/odom")
    assert messages[-3].time_ns - round(5.02 * NS) > 9 * NS // 1000
