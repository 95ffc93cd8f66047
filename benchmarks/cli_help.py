"""CPU seconds of ``pgan --help`` and of every sub-command's ``--help``, each in a fresh process.

The CLI builds its whole parser without importing torch or any other heavy module (a test checks the
imports; this script measures what that buys). CPU time (user + system of the child, from
``getrusage``), not wall time, so other jobs on the machine change it little. Writes
``docs/cli_help.json`` and prints the slowest commands.

    python benchmarks/cli_help.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from pgan.cli import build_parser
from pgan.utils.atomic import atomic_write_json


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every parser's path: the root ``()``, the groups and the leaves."""
    paths = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*path, name))
    return paths


def help_cpu_seconds(path: tuple[str, ...]) -> float:
    """CPU seconds (user + system) of one ``python -m pgan PATH --help`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "pgan", *path, "--help"], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="docs/cli_help.json", help="file: the JSON written")
    ap.add_argument("--repeats", type=int, default=3, help="runs per command (the median is reported)")
    args = ap.parse_args(argv)
    rows = []
    for path in command_paths(build_parser()):
        runs = [help_cpu_seconds(path) for _ in range(args.repeats)]
        rows.append({"command": " ".join(("pgan", *path)), "cpu_s_median": round(statistics.median(runs), 3),
                     "cpu_s_runs": [round(r, 3) for r in runs]})
    worst = max(r["cpu_s_median"] for r in rows)
    result = {"commands": len(rows), "cpu_s_max_median": worst,
              "cpu_s_median_of_medians": round(statistics.median(r["cpu_s_median"] for r in rows), 3),
              "load_average_at_start": os.getloadavg(), "python": sys.version.split()[0], "rows": rows}
    atomic_write_json(Path(args.out), result)
    for r in sorted(rows, key=lambda r: -r["cpu_s_median"])[:5]:
        print(f"{r['command']}: {r['cpu_s_median']:.3f} s CPU")
    print(f"{len(rows)} commands; slowest {worst:.3f} s CPU; wrote {args.out}")


if __name__ == "__main__":
    main()
