"""LeRobot v3.0 datasets: our writer and reader, LeRobot's own `LeRobotDataset` loading them, legacy `.npz` datasets.

The LeRobot check runs in LeRobot's own environment (lerobot 0.6 needs Python >= 3.12 and torch < 2.12, so it
cannot share ours): `physai lerobot setup` creates it (or PHYSAI_LEROBOT_ENV names an existing one); the test skips,
saying so, where it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from physical_ai.data.convert import convert_npz
from physical_ai.data.legacy_npz import NpzReader
from physical_ai.data.lerobot_format import DatasetError, DatasetWriter, Feature, LeRobotReader, data_path
from physical_ai.data.provenance import MANIFEST_PATH, cite, sha256_file
from physical_ai.training.dataset import open_dataset

HERE = Path(__file__).parent
LEGACY = HERE.parent / "data" / "legacy_npz_amr"  # written by `physai collect` before it wrote LeRobot datasets
FEATURES = {"observation.state": Feature("float32", (3,), ("x", "y", "yaw")),
            "observation.obstacles": Feature("float32", (4, 2), ("x", "y")),
            "observation.images.front": Feature("video", (30, 40, 3), ("height", "width", "channels")),
            "progress": Feature("float32", ()),
            "action": Feature("float32", (2,), ("v", "w"))}


def lerobot_python() -> str:
    """LeRobot's interpreter, or skip with how to provide it."""
    try:
        from physical_ai.policy.lerobot_env import LerobotEnvError, env_python
    except ImportError:  # before `physai lerobot` existed: an existing environment named by the variable
        root = os.environ.get("PHYSAI_LEROBOT_ENV", "")
        python = Path(root) / "bin" / "python"
        if not root or not python.is_file():
            pytest.skip("LeRobot 0.6 environment absent: set PHYSAI_LEROBOT_ENV to one (lerobot 0.6 needs Python "
                        ">= 3.12 and torch < 2.12, so it lives in its own environment)")
        return str(python)
    try:
        return str(env_python())
    except LerobotEnvError as exc:
        pytest.skip(f"LeRobot 0.6 environment absent: {exc}")


def smooth_frames(rng: np.random.Generator, length: int) -> np.ndarray:
    """Camera-like frames (smooth gradients moving per frame): video compression keeps them within a few levels."""
    yy, xx = np.mgrid[0:30, 0:40]
    frames = [np.stack([(xx * 5 + t * 7) % 256, (yy * 6 + t * 3) % 256, np.full_like(xx, 40 + 10 * t % 200)], -1)
              for t in range(length)]
    return np.asarray(frames, np.uint8)


def write_small(root: Path, episodes: int = 3) -> dict[int, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(root, "amr", 10.0, FEATURES, extra={"scenario": "amr"})
    written = {}
    for e in range(episodes):
        n = 6 + e
        frames = {"observation.state": rng.normal(size=(n, 3)), "observation.obstacles": rng.normal(size=(n, 4, 2)),
                  "observation.images.front": smooth_frames(rng, n), "progress": np.linspace(0, 1, n),
                  "action": rng.normal(size=(n, 2))}
        writer.add_episode(frames, task=["go left", "go right"][e % 2], meta={"seed": 100 + e, "success": e != 1},
                           extra_arrays={"wm_frame": np.arange(e + 1)})
        written[e] = frames
    writer.finish()
    return written


def test_round_trip_through_our_reader(tmp_path: Path) -> None:
    written = write_small(tmp_path / "ds")
    ds = open_dataset(tmp_path / "ds")
    assert isinstance(ds, LeRobotReader) and len(ds) == 3 and ds.fps == 10
    for e, frames in written.items():
        ep = ds.load_episode(e)
        for key in ("observation.state", "observation.obstacles", "progress", "action"):
            np.testing.assert_allclose(ep[key], frames[key].astype(np.float32), rtol=0, atol=0)
        video_error = np.abs(ep["observation.images.front"].astype(int) - frames["observation.images.front"]).mean()
        assert ep["observation.images.front"].shape == frames["observation.images.front"].shape
        assert video_error < 3.0  # H.264 at CRF 18: visually lossless
        assert list(ep["index"]) == list(range(sum(6 + i for i in range(e)), sum(6 + i for i in range(e + 1))))
        assert ep["next.done"][-1] and not ep["next.done"][:-1].any()
        np.testing.assert_array_equal(ep["extra.wm_frame"], np.arange(e + 1))
    assert ds.episodes[1]["success"] is False and ds.episodes[2]["seed"] == 102
    assert ds.task(1) == "go right" and ds.tasks() == {0: "go left", 1: "go right"}
    stats = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats["observation.state"]["count"] == [6 + 7 + 8]


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a positive integer"):
        DatasetWriter(tmp_path / "a", "amr", 12.5, FEATURES)
    writer = DatasetWriter(tmp_path / "b", "amr", 10, FEATURES)
    good = {"observation.state": np.zeros((4, 3)), "observation.obstacles": np.zeros((4, 4, 2)),
            "observation.images.front": np.zeros((4, 30, 40, 3), np.uint8), "progress": np.zeros(4),
            "action": np.zeros((4, 2))}
    with pytest.raises(DatasetError, match="non-finite"):
        writer.add_episode({**good, "action": np.full((4, 2), np.nan)}, "t", {})
    with pytest.raises(DatasetError, match=r"observation.state frames of shape \(2,\)"):
        writer.add_episode({**good, "observation.state": np.zeros((4, 2))}, "t", {})
    with pytest.raises(DatasetError, match="unequal or zero length"):
        writer.add_episode({**good, "action": np.zeros((3, 2))}, "t", {})
    writer.add_episode(good, "t", {})
    writer.finish()
    with pytest.raises(DatasetError, match="already exists"):
        DatasetWriter(tmp_path / "b", "amr", 10, FEATURES)


def test_damaged_files_are_named(tmp_path: Path) -> None:
    write_small(tmp_path / "ds")
    ds = LeRobotReader(tmp_path / "ds")
    path = data_path(tmp_path / "ds", 2)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"episode 2 .*file-002\.parquet.*corrupt or truncated"):
        ds.load_episode(2)
    video = tmp_path / "ds" / "videos" / "observation.images.front" / "chunk-000" / "file-001.mp4"
    video.unlink()
    with pytest.raises(DatasetError, match=r"episode 1: .*file-001\.mp4: video file missing"):
        ds.load_episode(1)
    (tmp_path / "ds" / "meta" / "info.json").unlink()
    with pytest.raises(DatasetError, match=r"info\.json missing"):
        LeRobotReader(tmp_path / "ds")


def test_legacy_npz_dataset_is_read_and_converted(tmp_path: Path) -> None:
    legacy = open_dataset(LEGACY)
    assert isinstance(legacy, NpzReader) and len(legacy) == 2
    out = tmp_path / "converted"
    summary = convert_npz(LEGACY, out)
    assert summary == {"episodes": 2, "frames": 16, "output": str(out)}
    converted = open_dataset(out)
    assert isinstance(converted, LeRobotReader)
    assert converted.physai["spec"] == legacy.physai["spec"]  # training reads the same policy spec
    for e in range(2):
        old, new = legacy.load_episode(e), converted.load_episode(e)
        for key in ("observation.state", "observation.obstacles", "observation.obstacles_mask", "action", "progress",
                    "extra.wm_candidates", "extra.wm_collision"):
            np.testing.assert_array_equal(new[key], old[key])
        assert converted.episodes[e]["seed"] == legacy.episodes[e]["seed"]
        assert converted.task(e) == legacy.task(e)
    manifest = json.loads((out / MANIFEST_PATH).read_text())
    assert [s["sha256"] for s in manifest["sources"]] == [
        sha256_file(LEGACY / "data" / "chunk-000" / f"episode_00000{e}.npz") for e in range(2)]
    assert manifest["steps"][0]["name"] == "convert" and manifest["tool"]["git_commit"]
    assert manifest["outputs"]["files"]["meta/info.json"] == sha256_file(out / "meta" / "info.json")
    assert cite(out)["manifest_sha256"] == sha256_file(out / MANIFEST_PATH)


def test_lerobot_loads_and_iterates_our_datasets(tmp_path: Path) -> None:
    """LeRobot's own LeRobotDataset (lerobot 0.6) opens what we write and sees the same values."""
    python = lerobot_python()
    written = write_small(tmp_path / "ds")
    convert_npz(LEGACY, tmp_path / "converted")
    for root, ours in ((tmp_path / "ds", written), (tmp_path / "converted", None)):
        out = subprocess.run([python, str(HERE / "lerobot_load_check.py"), str(root)], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        reader = LeRobotReader(root)
        episodes = [reader.load_episode(e) for e in range(len(reader))]
        assert report["frames"] == sum(len(ep["action"]) for ep in episodes)
        assert report["episodes"] == len(reader) and report["fps"] == reader.fps
        expected = np.concatenate([ep["action"].sum(-1) for ep in episodes])
        np.testing.assert_allclose(report["action_sums"], expected, rtol=1e-5, atol=1e-5)
        assert report["tasks"] == {str(e): reader.task(e) for e in range(len(reader))}
        assert report["window_shape"] == [5, 2] and report["window_pad"][1:] == [True] * 4
        if ours is not None:
            assert report["camera_keys"] == ["observation.images.front"]
            assert report["shapes"]["observation.images.front"] == [3, 30, 40]
            for e, frames in ours.items():  # LeRobot decodes the pixels we encoded
                mean = frames["observation.images.front"].mean() / 255.0
                assert report["pixel_means"][f"observation.images.front/{e}"] == pytest.approx(mean, abs=0.01)


def test_copy_of_dataset_is_independent(tmp_path: Path) -> None:
    """Datasets are plain directories: copies open and read like the original (no absolute paths inside)."""
    write_small(tmp_path / "ds", episodes=1)
    shutil.copytree(tmp_path / "ds", tmp_path / "copy")
    shutil.rmtree(tmp_path / "ds")
    assert len(open_dataset(tmp_path / "copy").load_episode(0)["action"]) == 6
