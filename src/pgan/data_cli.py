"""The ``data`` subcommands of ``pgan``: ``data csv`` (the custom-dataset CSV from a folder of photos).

A thin argparse layer over :mod:`pgan.data.folder_csv`; ``pgan.cli`` calls :func:`register` with its
subparsers object. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse

from pgan.cli_options import add_command, add_group, add_out
from pgan.data.folder_csv import DEFAULT_TEST_FRACTION

__all__ = ["register"]

LAYOUTS = """layouts read without --pattern: DIR/<vehicle>/<camera>_*.jpg and DIR/<vehicle>/<camera>/*.jpg.
Splits are by vehicle: with two cameras, held-out vehicles' lower camera id is the query and the
other camera the gallery; with more, one seeded query per vehicle and camera (VeRi-776), every
held-out image in the gallery. Vehicles seen by one camera train."""


def _cmd_csv(args: argparse.Namespace) -> int:
    from pgan.data.folder_csv import assign_splits, scan_folder, summarize, write_custom_csv

    scan = scan_folder(args.images, pattern=getattr(args, "pattern", None))
    rows = assign_splits(scan.images, seed=args.seed, test_fraction=args.test_fraction)
    summary = summarize(rows)
    out = write_custom_csv(rows, args.out)
    print(summary.table())
    print(f"layout: {'--pattern' if scan.layout == 'pattern' else scan.layout}; split rule: {summary.rule}")
    print(f"{len(scan.images)} images of {len({im.vehicle for im in scan.images})} vehicles; "
          f"{len(scan.skipped)} non-image files skipped; {summary.single_camera_vehicles} vehicles seen by one "
          f"camera put in train (no cross-camera match to evaluate)")
    print(f"wrote {out} (seed {args.seed})")
    print(f"next: pgan train --config configs/custom_baseline.yaml data.root={out}  (or custom_pgan.yaml)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data {csv}`` to ``pgan``'s subcommands."""
    data = add_group(sub, "data", help="prepare your own photos: data csv", dest="data_command", metavar="ACTION")
    p = add_command(data, "csv", help="write the custom-dataset CSV (path,vehicle_id,camera_id,split) from a "
                                      "folder of photos, split by vehicle with a seed",
                    description="Write the custom-dataset CSV from a folder of vehicle photos: ids from the\n"
                                "layout or --pattern, train/query/gallery split by vehicle with --seed.\n\n"
                                + LAYOUTS,
                    example=["pgan data csv --images photos --out my.csv  # photos/<vehicle>/<camera>_*.jpg",
                             "pgan data csv --images photos --out my.csv \\",
                             "    --pattern '(?P<vehicle>[a-z]+_[0-9]+)_cam(?P<camera>[0-9]+)'",
                             "    # flat files such as car_0088_cam2.jpg"])
    p.add_argument("--images", required=True, metavar="DIR",
                   help="the folder of photos (scanned recursively; non-image files are skipped and counted)")
    add_out(p, "file", "the CSV to write (paths in it are relative to its folder for images under that folder, "
                       "absolute otherwise)")
    p.add_argument("--pattern", metavar="REGEX",
                   help="regular expression with the named groups vehicle and camera, searched in each path "
                        "relative to --images (unset: the folder layouts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (same seed, same split)")
    p.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION,
                   help="share of the vehicles held out for evaluation (query + gallery), chosen among those "
                        "seen by two or more cameras")
    p.set_defaults(func=_cmd_csv)
