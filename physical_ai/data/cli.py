"""`physai dataset ...`: robot recordings to anonymised, cleansed LeRobot training sets.

physai dataset build rec1.mcap rec2.mcap --robot amr --output data/amr_rec    # ingest, cleanse, anonymise, write
physai dataset convert data/old_npz --output data/old_lerobot                # an older .npz dataset -> LeRobot
physai dataset info data/amr_rec                                              # episodes, features, provenance
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from physical_ai.data.lerobot_format import DatasetError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of `physai dataset`."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    convert = sub.add_parser("convert", help="convert an older .npz dataset of `physai collect` to LeRobot v3.0")
    convert.add_argument("source", help="dataset directory in the .npz layout (meta/info.json 'v2.1-npz')")
    convert.add_argument("--output", required=True, help="new LeRobot dataset directory")
    convert.add_argument("--licence", default="", help="licence of the data, recorded in the manifest")
    info = sub.add_parser("info", help="summarise a dataset: episodes, frames, features, provenance")
    info.add_argument("dataset", help="dataset directory (LeRobot v3.0 or .npz)")
    from physical_ai.data.build import add_build_arguments

    add_build_arguments(sub.add_parser("build", help="recordings (MCAP) -> cleansed, anonymised LeRobot dataset"))


def run(args: argparse.Namespace) -> int:
    """Entry point of `physai dataset`."""
    try:
        if args.action == "convert":
            from physical_ai.data.convert import convert_npz

            summary = convert_npz(args.source, args.output, args.licence)
            print(f"CONVERT episodes={summary['episodes']} frames={summary['frames']} output={summary['output']}")
            return 0
        if args.action == "info":
            return _info(Path(args.dataset))
        from physical_ai.data.build import run_build

        return run_build(args)
    except DatasetError as exc:
        print(f"physai dataset {args.action}: {exc}", file=sys.stderr)
        return 2


def _info(root: Path) -> int:
    from physical_ai.data.provenance import MANIFEST_PATH
    from physical_ai.training.dataset import open_dataset

    ds = open_dataset(root)
    frames = sum(int(e["length"]) for e in ds.episodes)
    print(f"{root}: {ds.info['codebase_version']} robot={ds.info.get('robot_type')} fps={ds.info['fps']} "
          f"episodes={len(ds)} frames={frames}")
    for name, feat in ds.features.items():
        print(f"  {name}: {feat.dtype} {list(feat.shape)}")
    manifest = root / MANIFEST_PATH
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        print(f"provenance: {len(m['sources'])} sources, steps {[s['name'] for s in m['steps']]}, "
              f"drops {m['drops']['by_reason']}, licence {m['licence']}, commit {m['tool']['git_commit']}")
    else:
        print("provenance: none (meta/provenance.json missing)")
    return 0
