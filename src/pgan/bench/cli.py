"""The ``bench`` subcommands of ``pgan``: ``runtime`` (Table VII) and ``ablation`` (Tables II-IV).

``pgan.cli`` calls :func:`register` with its subparsers object; more benchmarks are added here.
"""

from __future__ import annotations

import argparse

from pgan.bench.ablation import DEFAULT_GRIDS, GRIDS
from pgan.cli_options import add_command, add_group, add_num_parts, add_out, add_threads
from pgan.errors import PganError

__all__ = ["register"]


def _cmd_bench_runtime(args: argparse.Namespace) -> int:
    from pgan.bench.runtime import bench_runtime, write_runtime_report
    from pgan.viz.report_html import prepare_out_dir

    if len(args.input) not in (1, 2):
        raise PganError(f"--input takes one size or H W, got {args.input}")
    size = (args.input[0], args.input[-1])
    out = prepare_out_dir(args.out)
    res = bench_runtime(args.backbone, size, tuple(args.batch_sizes), args.repeats, args.warmup, args.devices,
                        args.threads, args.num_parts, args.reduced_dim, args.seed, args.detector_checkpoint)
    write_runtime_report(res, out)
    print(res.markdown())
    print(f"wrote {out / 'runtime.md'} and {out / 'report.html'}")
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from pgan.bench.ablation import GRIDS, markdown_table, run_grid
    from pgan.config import apply_overrides, load_config

    if args.dataset == "synth":
        from pgan.demo import DEMO_SYNTH
        from pgan.recipes import SYNTH_ABLATION_CPU, synth_cpu_config
        from pgan.synth import generate_synth, synth_config_from_dict

        if args.config:
            raise PganError("--config is for real datasets; the synthetic grid uses the built-in CPU recipe")
        generate_synth(args.data, synth_config_from_dict(DEMO_SYNTH), progress=False)
        base = apply_overrides(synth_cpu_config("pgan", args.data, args.out, recipe=SYNTH_ABLATION_CPU,
                                                run__progress=False), args.overrides)
    else:
        if not args.config:
            raise PganError(f"--config (a recipe such as configs/{args.dataset}_pgan.yaml) is needed for "
                            f"dataset {args.dataset!r}")
        base = load_config(args.config, args.overrides)
    for grid in args.grids:
        summaries = run_grid(grid, base, args.out, tuple(args.seeds), train_missing=not args.summarise_only)
        print(markdown_table(summaries, GRIDS[grid].title))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``bench`` to ``pgan``; returns its subparsers (for benchmarks added elsewhere)."""
    bsub = add_group(subparsers, "bench", help="benchmarks: runtime (Table VII), ablation grids (Tables II-IV)",
                     dest="bench_command", metavar="BENCHMARK")
    p = add_command(bsub, "runtime", help="ms per image: part detector, baseline and PGAN re-ID networks, total",
                    example="pgan bench runtime --backbone mobilenet_v2 --input 160 --out runs/runtime")
    p.add_argument("--backbone", default="resnet50", help="re-ID backbone (pgan.list_backbones())")
    p.add_argument("--input", type=int, nargs="+", default=[224], metavar="SIZE", help="input size: 224 or H W")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="batch sizes timed")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per module (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    add_threads(p)
    p.add_argument("--devices", nargs="+", default=["auto"], help="cpu, cuda or auto (cpu, and cuda if present)")
    add_num_parts(p, 8, "parts per image (D)")
    p.add_argument("--reduced-dim", type=int, default=256, help="C': the retrieval feature is 2C'")
    p.add_argument("--detector-checkpoint", metavar="FILE",
                   help="time a trained part detector instead of random weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    add_out(p, "folder", "the figures, tables and report.html")
    p.set_defaults(func=_cmd_bench_runtime)

    p = add_command(bsub, "ablation", help="the paper's ablation tables: named grids x seeds, mean ± std",
                    example="pgan bench ablation --dataset synth --grids variants --seeds 0 1 2")
    p.add_argument("--dataset", default="synth", help="'synth' (built-in CPU recipe) or a dataset name")
    p.add_argument("--config", metavar="FILE", help="recipe for a real dataset, e.g. configs/veri776_pgan.yaml")
    p.add_argument("--grids", nargs="+", default=list(DEFAULT_GRIDS), choices=sorted(GRIDS), metavar="GRID",
                   help=f"grids to run: {', '.join(sorted(GRIDS))}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of every grid cell")
    add_out(p, "folder", "run folders and tables", required=False, default="runs/ablation")
    p.add_argument("--data", default="data/demo-synth", metavar="DIR", help="synthetic data folder (synth only)")
    p.add_argument("--summarise-only", action="store_true",
                   help="train nothing; tabulate the finished runs (unfinished ones are counted as pending)")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE", help="config changes for every run")
    p.set_defaults(func=_cmd_ablation)
    return bsub
