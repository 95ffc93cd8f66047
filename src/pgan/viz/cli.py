"""The ``viz`` and ``analyze`` subcommands of ``pgan`` (thin argparse over the library).

``pgan.cli`` calls :func:`register` with its subparsers object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _cmd_viz_ranks(args: argparse.Namespace) -> int:
    from pgan.viz.ranks import rank_pages

    summary = rank_pages(args.checkpoint, args.out, compare=args.compare, num_queries=args.queries,
                         query_ids=args.query_ids, k=args.k, per_page=args.per_page, seed=args.seed,
                         overrides=args.overrides)
    for label, m in zip(summary["models"], summary["mean_ap"]):
        print(f"{label}: mean AP of the {len(summary['queries'])} shown queries {m:.3f}")
    print(f"wrote {len(summary['pages'])} pages and {Path(args.out) / 'report.html'}")
    return 0


def _cmd_viz_attention(args: argparse.Namespace) -> int:
    from pgan.viz.attention import attention_figures

    res = attention_figures(args.checkpoint, args.out, keys=args.images, num=args.num, split=args.split,
                            seed=args.seed)
    print(f"wrote {len(res['figures'])} figures and {Path(args.out) / 'report.html'}")
    return 0


def _cmd_analyze_attention(args: argparse.Namespace) -> int:
    from pgan.viz.attention_stats import analyze_attention

    analyze_attention(args.checkpoint, args.out, split=args.split, max_images=args.max_images, seed=args.seed,
                      batch_size=args.batch_size)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder for the figures, tables and report.html")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``viz`` and ``analyze`` to ``pgan``."""
    viz = subparsers.add_parser("viz", help="figures: rank lists, part attention")
    vsub = viz.add_subparsers(dest="viz_command", required=True, metavar="FIGURE")
    p = vsub.add_parser("ranks", help="top-K rank lists of queries (green = same vehicle, red = different)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--compare", help="a second checkpoint on the same data, shown on the left (e.g. baseline)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--queries", type=int, default=8, help="number of random queries (default 8)")
    group.add_argument("--query-ids", nargs="+", metavar="ID",
                       help="query image keys, file names or vehicle ids (first query image of the id)")
    p.add_argument("--k", type=int, default=5, help="gallery images per query (default 5)")
    p.add_argument("--per-page", type=int, default=4, help="queries per PNG page (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random query choice")
    _out(p)
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="change the checkpoints' stored config, e.g. data.root=... for moved data")
    p.set_defaults(func=_cmd_viz_ranks)

    p = vsub.add_parser("attention", help="per image: top-D part boxes, PAM weights, F_g / F_p heatmaps")
    p.add_argument("--checkpoint", required=True, help="a pgan, nopam or grid checkpoint")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--images", nargs="+", metavar="KEY", help="image keys (or file names) of the dataset")
    group.add_argument("--num", type=int, default=4, help="number of random images of --split (default 4)")
    p.add_argument("--split", default="query", choices=("train", "query", "gallery"))
    p.add_argument("--seed", type=int, default=0)
    _out(p)
    p.set_defaults(func=_cmd_viz_attention)

    analyze = subparsers.add_parser("analyze", help="statistics over a dataset split")
    asub = analyze.add_subparsers(dest="analyze_command", required=True, metavar="ANALYSIS")
    p = asub.add_parser("attention", help="per part class: selection frequency and PAM weight distribution")
    p.add_argument("--checkpoint", required=True, help="a pgan, nopam or grid checkpoint")
    p.add_argument("--split", default="query", choices=("train", "query", "gallery"))
    p.add_argument("--max-images", type=int, default=None, help="a random subset of the split (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    _out(p)
    p.set_defaults(func=_cmd_analyze_attention)

