"""The ``viz`` and ``analyze`` subcommands of ``pgan`` (thin argparse over the library).

``pgan.cli`` calls :func:`register` with its subparsers object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgan.cli_options import add_command, add_group, add_out, add_top_k

__all__ = ["register"]


def _cmd_viz_ranks(args: argparse.Namespace) -> int:
    from pgan.viz.ranks import rank_pages

    summary = rank_pages(args.checkpoint, args.out, compare=args.compare, num_queries=args.queries,
                         query_ids=args.query_ids, k=args.top_k, per_page=args.per_page, seed=args.seed,
                         overrides=args.overrides)
    for label, m in zip(summary["models"], summary["mean_ap"]):
        print(f"{label}: mean AP of the {len(summary['queries'])} shown queries {m:.3f}")
    print(f"wrote {len(summary['pages'])} pages and {Path(args.out) / 'report.html'}")
    return 0


def _cmd_viz_attention(args: argparse.Namespace) -> int:
    from pgan.viz.attention import attention_figures

    res = attention_figures(args.checkpoint, args.out, keys=args.keys, num=args.num, split=args.split,
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
    add_out(p, "folder", "the figures, tables and report.html")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``viz`` and ``analyze`` to ``pgan``."""
    vsub = add_group(subparsers, "viz", help="figures: rank lists, part attention", dest="viz_command",
                     metavar="FIGURE")
    p = add_command(vsub, "ranks", help="top-K rank lists of queries (green = same vehicle, red = different)",
                    example="pgan viz ranks --checkpoint runs/custom_pgan/last.pt "
                            "--compare runs/custom_baseline/last.pt --out runs/ranks")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint of pgan train")
    p.add_argument("--compare", metavar="FILE",
                   help="a second checkpoint on the same data, shown on the left (e.g. baseline)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--queries", type=int, default=8, help="number of random queries")
    group.add_argument("--query-ids", nargs="+", metavar="ID",
                       help="query image keys, file names or vehicle ids (first query image of the id)")
    add_top_k(p, 5, "gallery images per query")
    p.add_argument("--per-page", type=int, default=4, help="queries per PNG page")
    p.add_argument("--seed", type=int, default=0, help="seed of the random query choice")
    _out(p)
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="change the checkpoints' stored config, e.g. data.root=... for moved data")
    p.set_defaults(func=_cmd_viz_ranks)

    p = add_command(vsub, "attention", help="per image: top-D part boxes, PAM weights, F_g / F_p heatmaps",
                    example="pgan viz attention --checkpoint runs/custom_pgan/last.pt --num 4 "
                            "--out runs/attention")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a pgan, nopam or grid checkpoint")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--keys", nargs="+", metavar="KEY", help="image keys (or file names) of the dataset")
    group.add_argument("--num", type=int, default=4, help="number of random images of --split")
    p.add_argument("--split", default="query", choices=("train", "query", "gallery"),
                   help="where images come from")
    p.add_argument("--seed", type=int, default=0, help="seed of the random image choice")
    _out(p)
    p.set_defaults(func=_cmd_viz_attention)

    asub = add_group(subparsers, "analyze", help="statistics over a dataset split", dest="analyze_command",
                     metavar="ANALYSIS")
    p = add_command(asub, "attention", help="per part class: selection frequency and PAM weight distribution",
                    example="pgan analyze attention --checkpoint runs/custom_pgan/last.pt "
                            "--out runs/attention_stats")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a pgan, nopam or grid checkpoint")
    p.add_argument("--split", default="query", choices=("train", "query", "gallery"), help="the images analysed")
    p.add_argument("--max-images", type=int, default=None,
                   help="a random subset of the split (seeded; unset: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    _out(p)
    p.set_defaults(func=_cmd_analyze_attention)
