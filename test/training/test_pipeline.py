"""End-to-end collect -> train -> eval on a tiny AMR run, and the pipeline's bad-input behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from physical_ai.data.lerobot_format import data_path, video_path
from physical_ai.policy.spec import ConfigError, load_config
from physical_ai.training.collect import collect
from physical_ai.training.dataset import DatasetError, open_dataset
from physical_ai.training.envs import make_env
from physical_ai.training.evaluate import check_policy_fits, evaluate, wilson_interval
from physical_ai.training.train import STATE_DIR, train

ARCH = {"type": "chunk_transformer", "d_model": 32, "n_heads": 2, "n_layers": 1, "ff_dim": 64,
        "image_channels": [8], "image_grid": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short AMR episodes with world-model labels."""
    root = tmp_path_factory.mktemp("data") / "amr"
    summary = collect("amr", root, episodes=2, seed=0, wm_every=10, wm_k=3, max_steps=30, progress_bar=False,
                      perception="fast")
    assert summary["episodes"] == 2
    return root


def test_dataset_layout_is_lerobot(dataset: Path) -> None:
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == 2 and info["total_frames"] == 60
    for key in ("observation.state", "observation.obstacles", "action", "timestamp", "episode_index", "next.done"):
        assert key in info["features"]
    camera = info["features"]["observation.images.front"]  # the AMR's front camera, as MP4
    assert camera["dtype"] == "video" and camera["shape"] == [120, 160, 3]
    assert (dataset / "meta" / "tasks.parquet").is_file()
    assert video_path(dataset, "observation.images.front", 1).is_file()
    ds = open_dataset(dataset)
    ep = ds.load_episode(1)
    assert ep["action"].shape == (30, 2)
    assert np.all(ep["episode_index"] == 1) and ep["next.done"][-1]
    assert ep["observation.images.front"].shape == (30, 120, 160, 3) and ep["observation.images.front"].std() > 5
    # observations are perception outputs: some obstacle tokens present, in the base frame
    assert ep["observation.obstacles_mask"].sum() > 0
    assert ep["extra.wm_candidates"].shape == (3, 3, 10, 2)
    stats = json.loads((dataset / "meta" / "stats.json").read_text())
    assert len(stats["observation.state"]["mean"]) == 5


def test_collect_train_eval_end_to_end(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    summary = train(dataset, out, "tiny_amr", ARCH, steps=30, batch_size=16, checkpoint_every=10,
                    progress_bar=False)
    assert not summary["interrupted"] and np.isfinite(summary["final_loss"])
    config = load_config(out)
    # normalisation statistics come from the data, not the identity defaults
    assert config.observation.state.std != (1.0,) * 5
    assert (out / "loss.png").stat().st_size > 1000
    assert config.extra["perception"] == "fast"  # eval senses the way the training data was sensed
    assert not (out / STATE_DIR).exists()
    rows, report = evaluate("amr", out, episodes=1, time_limit_s=2.0, progress_bar=False)
    assert report["episodes"] == 1 and len(rows) == 1
    assert 0.0 <= report["success_ci95"][0] <= report["success_ci95"][1] <= 1.0
    assert rows[0].time_s == pytest.approx(2.0, abs=0.11)


def test_corrupt_episode_is_named(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "corrupt"
    shutil.copytree(dataset, copy)
    shard = data_path(copy, 1)
    shard.write_bytes(shard.read_bytes()[:200])  # truncated mid-file
    with pytest.raises(DatasetError, match=r"episode 1 .*corrupt or truncated"):
        train(copy, tmp_path / "m", "x", ARCH, steps=2, progress_bar=False)
    shard.unlink()
    with pytest.raises(DatasetError, match=r"episode 1 .*data file missing"):
        open_dataset(copy).load_episode(1)
    video = video_path(copy, "observation.images.front", 0)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"episode 0: .*file-000\.mp4"):
        open_dataset(copy).load_episode(0)


def test_partial_dataset_is_rejected(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "partial"
    shutil.copytree(dataset, copy)
    (copy / "meta" / "info.json").unlink()  # collection interrupted before it finished
    with pytest.raises(DatasetError, match=r"info\.json missing"):
        open_dataset(copy)


def test_resume_after_interruption(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    first = train(dataset, out, "resume", ARCH, steps=24, batch_size=8, stop_after=10, progress_bar=False,
                  quiet=True)
    assert first == {"interrupted": True, "step": 10}
    progress = json.loads((out / STATE_DIR / "progress.json").read_text())
    assert progress["step"] == 10 and (out / STATE_DIR / "optimizer.safetensors").is_file()
    second = train(dataset, out, "resume", ARCH, steps=24, batch_size=8, resume=True, progress_bar=False)
    assert not second["interrupted"] and second["step"] == 24
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == 24 and log["history"][-1][0] == 24


def test_resume_without_state_fails_clearly(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nothing to resume"):
        train(dataset, tmp_path / "none", "x", ARCH, steps=5, resume=True, progress_bar=False)


def test_spec_mismatch_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    train(dataset, out, "amr_policy", ARCH, steps=2, batch_size=4, progress_bar=False)
    with pytest.raises(ConfigError, match="embodiment"):
        check_policy_fits(load_config(out), make_env("arm"))
    with pytest.raises(ConfigError, match="does not fit scenario 'arm'"):
        evaluate("arm", out, episodes=1, progress_bar=False)


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / 13.8415, abs=1e-4)
    lo, hi = wilson_interval(50, 50)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(50 / (50 + 3.8415), abs=1e-4)
    lo, hi = wilson_interval(45, 50)
    assert lo < 0.9 < hi


def test_interrupted_collection_keeps_finished_episodes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai.cli", "collect", "amr", "--episodes", "50",
                             "--max-steps", "15", "--wm-every", "0", "--perception", "fast", "--no-progress",
                             "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("data/chunk-000/file-*.parquet"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert "COLLECT amr" in stdout
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "interrupted" in stderr
    ds = open_dataset(out)
    assert 2 <= len(ds) < 50
    for index, arrays in ds.iter_episodes():
        assert len(arrays["action"]) == 15, index


def test_train_on_a_subset_of_the_state_and_evaluate(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "pose_only"
    keep = ["odom.x", "odom.y", "odom.yaw"]
    train(dataset, out, "pose_only", ARCH, steps=5, batch_size=8, checkpoint_every=5, progress_bar=False,
          state_features=keep)
    config = load_config(out)
    assert list(config.observation.state.names) == keep and len(config.observation.state.mean) == 3
    # normalisation statistics are the kept columns' (x spans the aisle, yaw barely moves)
    assert config.observation.state.std[0] > config.observation.state.std[2]
    rows, report = evaluate("amr", out, episodes=1, time_limit_s=1.0, progress_bar=False)
    assert report["episodes"] == 1 and len(rows) == 1  # the env's 5-entry state was cut to the policy's 3 entries
    with pytest.raises(DatasetError, match=r"odom\.vz"):
        train(dataset, tmp_path / "bad", "bad", ARCH, steps=1, progress_bar=False, state_features=["odom.vz"])


def test_an_interrupt_during_an_episode_write_is_raised_after_it() -> None:
    import os
    import signal
    import time

    from physical_ai.training.collect import _Interrupts

    stop = _Interrupts()
    previous = signal.signal(signal.SIGINT, stop.handle)
    written = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with stop.held():
                os.kill(os.getpid(), signal.SIGINT)
                written.append("shard")
                written.append("entry")
        assert written == ["shard", "entry"]  # the held block ran to its end before the interrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # outside held(): at once
            time.sleep(5)
    finally:
        signal.signal(signal.SIGINT, previous)
