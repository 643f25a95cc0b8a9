"""Data pipeline benchmarks: anonymisation coverage of people in images, and build throughput.

BENCH dataset.anonymise.person_pixel_coverage   fraction of ground-truth person pixels masked (target >= 0.99);
                                                 baselines in the same run: the image detector alone, the LiDAR
                                                 tracks alone
BENCH dataset.anonymise.non_person_masked       fraction of other pixels masked as well (what the masks cost)
BENCH dataset.build.throughput_per_core          recorded seconds processed per wall second per worker, with one
                                                 worker per core; baseline: one worker
BENCH dataset.build.ros_throughput_per_core      the same for one task on a recording of the ROS stack (with
                                                 --ros-episodes N: `physai eval amr --mode ros --record`, the shipped
                                                 policy; 640x480 raw images, every topic the evaluation records)

Ground truth: simulated factory-floor runs (`physical_ai.data.sim_recording`: the expert drives, the perception
core tracks the workers from the simulated LiDAR, 640x480 camera) with MuJoCo's segmentation rendering of every
worker pixel. Usage: python bench/dataset_bench.py [--episodes 6] [--steps 250] [--seed 500000] [--smoke]
[--ros-episodes N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np


def coverage(recording: Path, truth: Path) -> dict[str, float]:
    """Person-pixel coverage of the masks (combined, detector only, LiDAR only) and the non-person masked share."""
    from dataclasses import replace

    from physical_ai.data.cleanse import _tf_buffer, split_episodes
    from physical_ai.data.mapping import load_mapping
    from physical_ai.data.mcap_read import read_recording
    from physical_ai.data.people import PeopleMasker, rgb_from_message

    mapping = load_mapping("amr")
    rec = read_recording(recording, mapping.topics())
    t = np.load(truth)
    gt = np.unpackbits(t["masks"], axis=2)[:, :, : int(t["width"])].astype(bool)
    variants = {"combined": mapping,
                "detector_only": replace(mapping, anonymise=replace(mapping.anonymise, detections_topic="")),
                "lidar_only": replace(mapping, anonymise=replace(mapping.anonymise, detector="off"))}
    covered = dict.fromkeys(variants, 0)
    other = dict.fromkeys(variants, 0)
    person = pixels = images = 0
    for episode in split_episodes(rec.messages, mapping):
        tf = _tf_buffer(episode)
        maskers = {k: PeopleMasker(m, episode) for k, m in variants.items()}
        for message in episode:
            if message.topic != "/camera/color/image_raw":
                continue
            image = rgb_from_message(message.msg)
            g = gt[images]
            images += 1
            person += int(g.sum())
            pixels += g.size
            for k, masker in maskers.items():
                mask = masker.mask(image, message, tf)[0].astype(bool)
                covered[k] += int((mask & g).sum())
                other[k] += int((mask & ~g).sum())
    assert images == len(gt), f"{images} images, {len(gt)} ground-truth masks"
    out = {f"coverage_{k}": covered[k] / max(person, 1) for k in variants}
    out.update({f"other_{k}": other[k] / max(pixels - person, 1) for k in variants})
    out.update(images=images, person_pixels=person, images_with_people=int((gt.reshape(len(gt), -1).any(1)).sum()))
    return out


def throughput(recordings: list[Path], work: Path, workers: int) -> dict[str, float]:
    """Build a dataset from `recordings` with `workers` processes; recorded s per wall s per worker."""
    from physical_ai.data.build import build

    out = work / f"ds_{workers}"
    shutil.rmtree(out, ignore_errors=True)
    summary = build([str(r) for r in recordings], out, "amr", workers=workers)
    return {"per_core": summary["throughput_per_core"], "wall_s": summary["wall_s"],
            "recorded_s": summary["recorded_s"], "frames": summary["frames"]}


def ros_throughput(episodes: int, work: Path) -> dict[str, float]:
    """Record `episodes` AMR episodes through the ROS nodes and the recorder node, then build them in one task."""
    from physical_ai.training.ros_eval import evaluate_ros

    recording = work / "ros.mcap"
    evaluate_ros("amr", Path(__file__).resolve().parents[1] / "models" / "amr_nav", episodes, 200000,
                 record=recording)
    return {**throughput([recording], work, 1), "size_mb": round(recording.stat().st_size / 1e6, 1)}


def main() -> int:
    """Print BENCH lines."""
    from physical_ai.data.sim_recording import record_simulated

    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=6, help="simulated episodes for the coverage figure")
    parser.add_argument("--steps", type=int, default=250, help="policy steps (0.1 s) per episode at most")
    parser.add_argument("--seed", type=int, default=500000)
    parser.add_argument("--smoke", action="store_true", help="one short pass, figures not meaningful (make test)")
    parser.add_argument("--ros-episodes", type=int, default=0, help="also record this many episodes of the ROS "
                                                                     "stack and measure a build of that recording")
    args = parser.parse_args()
    if args.smoke:
        args.episodes, args.steps = 1, 30
    work = Path(tempfile.mkdtemp(prefix="dataset_bench_"))
    try:
        t0 = time.monotonic()
        recordings = []
        for i in range(args.episodes):  # one recording per episode: the build's tasks
            path = work / f"rec{i}.mcap"
            record_simulated(path, episodes=1, seed=args.seed + i, max_steps=args.steps,
                             truth=work / f"rec{i}_truth.npz")
            recordings.append(path)
        print(f"simulated {args.episodes} episodes in {time.monotonic() - t0:.0f} s", flush=True)
        totals: dict[str, float] = {}
        for path in recordings:
            c = coverage(path, path.with_name(path.stem + "_truth.npz"))
            print(f"{path.name}: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in c.items()), flush=True)
            for k in ("combined", "detector_only", "lidar_only"):
                totals[f"covered_{k}"] = totals.get(f"covered_{k}", 0.0) + c[f"coverage_{k}"] * c["person_pixels"]
                totals[f"other_{k}"] = totals.get(f"other_{k}", 0.0) + c[f"other_{k}"] * c["images"]
            totals["person"] = totals.get("person", 0.0) + c["person_pixels"]
            totals["images"] = totals.get("images", 0.0) + c["images"]
        person, images = max(totals["person"], 1.0), max(totals["images"], 1.0)
        print(f"BENCH dataset.anonymise.person_pixel_coverage {totals['covered_combined'] / person:.4f} fraction "
              f"(baseline detector only {totals['covered_detector_only'] / person:.4f}, LiDAR tracks only "
              f"{totals['covered_lidar_only'] / person:.4f}; {int(totals['person'])} person pixels in "
              f"{int(totals['images'])} images, {args.episodes} episodes)")
        print(f"BENCH dataset.anonymise.non_person_masked {totals['other_combined'] / images:.4f} fraction "
              f"(baseline detector only {totals['other_detector_only'] / images:.4f})")
        cores = os.cpu_count() or 1
        one = throughput(recordings, work, 1)
        many = throughput(recordings, work, cores)
        print(f"BENCH dataset.build.throughput_per_core {many['per_core']:.3f} recorded_s/wall_s/core "
              f"({cores} workers: {many['recorded_s']} s recorded in {many['wall_s']} s; baseline 1 worker "
              f"{one['per_core']:.3f}, {one['wall_s']} s)")
        if args.ros_episodes:
            ros = ros_throughput(args.ros_episodes, work)
            print(f"BENCH dataset.build.ros_throughput_per_core {ros['per_core']:.3f} recorded_s/wall_s/core (one "
                  f"task: {args.ros_episodes}-episode ROS recording, {ros['size_mb']} MB, {ros['recorded_s']} s "
                  f"recorded in {ros['wall_s']} s, {ros['frames']} frames; baseline: simulated recordings, 1 worker "
                  f"{one['per_core']:.3f})")
        print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
