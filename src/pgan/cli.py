"""The ``pgan`` command: a thin argparse layer over the library.

User errors (:class:`pgan.errors.PganError`) print one line and exit with 2;
Ctrl-C exits with 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from pgan.cli_options import HelpFormatter, add_command, add_out, add_quiet
from pgan.errors import PganError
from pgan.utils.safe_load import TRUST_ENV

__all__ = ["build_parser", "main"]


def _cmd_synth(args: argparse.Namespace) -> int:
    from pgan.synth import generate_synth, synth_config_from_dict

    values = {}
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise PganError(f"--set {item!r} must look like key=value")
        values[key.strip()] = yaml.safe_load(raw)
    if args.seed is not None:
        values["seed"] = args.seed
    if args.realism is not None:
        values["realism"] = args.realism
    summary = generate_synth(args.out, synth_config_from_dict(values), progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pgan.config import dump_config, load_config
    from pgan.engine.train import train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_config(cfg))
        return 0
    result = train(cfg, resume=args.resume)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pgan.engine.evaluate import evaluate_checkpoint
    from pgan.utils.atomic import atomic_write_json

    metrics = evaluate_checkpoint(args.checkpoint, args.overrides)
    print("| metric | value |\n|---|---|")
    for k, v in metrics.items():  # retrieval metrics in %, the attention figures (ratio, entropy) as they are
        shown = (f"{v:.3f}" if k.startswith("attention_") else f"{100 * v:.2f}") if isinstance(v, float) else v
        print(f"| {k} | {shown} |")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("eval.json")
    atomic_write_json(out, metrics)
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pgan.demo import run_demo

    report = run_demo(args.out, args.data, seed=args.seed, epochs=args.epochs, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text())
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``pgan`` parser. Building it imports no heavy module (see :mod:`pgan.cli_options`)."""
    from pgan.bench.cli import register as register_bench
    from pgan.data_cli import register as register_data
    from pgan.detection.cli import register as register_parts
    from pgan.discovery_cli import register as register_discover
    from pgan.search_cli import register as register_search
    from pgan.serve.cli import register as register_serve
    from pgan.viz.cli import register as register_viz

    parser = argparse.ArgumentParser(
        prog="pgan", formatter_class=HelpFormatter,
        description="pgan: vehicle re-identification with the Part-Guided Attention Network (PGAN).\n"
                    "Train on your photos or a public dataset, evaluate, and search galleries of camera crops.",
        epilog="your own photos, end to end:\n"
               "  pgan data csv --images photos/ --out my.csv\n"
               "  pgan train --config configs/custom_baseline.yaml data.root=my.csv\n"
               "  pgan eval --checkpoint runs/custom_baseline/last.pt\n"
               "  pgan index build --checkpoint runs/custom_baseline/last.pt --images my.csv --split gallery "
               "--out runs/index\n"
               "  pgan search --index runs/index query.jpg\n"
               "  pgan serve --index runs/index\n\n"
               "'pgan COMMAND --help' shows each command's options, defaults and an example.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow checkpoints that need the full unpickler (old pgan format): only for files "
                             "from a source you trust, since loading them can run code")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(sub, "synth", help="generate the synthetic near-twin vehicle benchmark (VeRi-776 layout)",
                    example="pgan synth --out data/synth --realism 0.5")
    add_out(p, "folder", "where the dataset is written")
    p.add_argument("--seed", type=int, default=None, help="generator seed (unset: the generator's default, 0)")
    p.add_argument("--realism", type=float, default=None, metavar="R",
                   help="photo realism in [0, 1]: texture, reflections, blur, JPEG, night, clutter "
                        "(unset: 0, the flat-colour images); same as --set realism=R")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                   help="generator settings, e.g. num_train_ids=200 difficulty=0.7 image_size=160")
    add_quiet(p)
    p.set_defaults(func=_cmd_synth)

    p = add_command(sub, "train", help="train a model from a recipe and dotted overrides",
                    example="pgan train --config configs/custom_pgan.yaml data.root=my.csv optim.epochs=24")
    p.add_argument("--config", metavar="FILE", help="YAML recipe (configs/); unset: the paper's defaults")
    p.add_argument("--resume", action="store_true", help="continue from <run.out_dir>/last.pt")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="config changes, e.g. data.root=my.csv run.out_dir=runs/mine optim.epochs=5")
    p.set_defaults(func=_cmd_train)

    p = add_command(sub, "eval", help="evaluate a checkpoint on its dataset's query / gallery (CMC, mAP, mINP)",
                    example="pgan eval --checkpoint runs/custom_pgan/last.pt run.flip_test=true")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint of pgan train (last.pt)")
    add_out(p, "file", "JSON metrics (unset: eval.json beside the checkpoint)", required=False)
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="change the stored config, e.g. data.root=... run.flip_test=true")
    p.set_defaults(func=_cmd_eval)

    p = add_command(sub, "demo", help="synthetic set -> baseline and PGAN -> report (2-core CPU, < 5 minutes)",
                    example="pgan demo --out runs/demo --data data/demo")
    add_out(p, "folder", "runs and the report", required=False, default="runs/demo")
    p.add_argument("--data", default="data/demo", metavar="DIR",
                   help="where the synthetic set is generated (reused when present)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of both runs")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a quick look)")
    add_quiet(p)
    p.set_defaults(func=_cmd_demo)

    register_data(sub)  # data {csv}
    register_parts(sub, register_discover)  # parts {train, eval, extract, convert, proposals, grid, discover}
    register_viz(sub)  # viz {ranks, attention}, analyze {attention}
    register_bench(sub)  # bench {runtime, ablation}
    register_serve(sub)  # serve (search service)
    register_search(sub)  # search, index {build, add, info}, export {onnx}
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    trust_before = os.environ.get(TRUST_ENV)
    if args.trust_checkpoint:  # read by pgan.utils.safe_load wherever a checkpoint is loaded
        os.environ[TRUST_ENV] = "1"
    try:
        return args.func(args)
    except PganError as exc:
        # Errors re-raised from DataLoader workers carry the worker's traceback; keep its last line.
        msg = str(exc).strip().splitlines()[-1]
        msg = msg.removeprefix("pgan.errors.PganError: ")
        print(f"pgan: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgan: interrupted; finished epochs are checkpointed (rerun with --resume)", file=sys.stderr)
        return 130
    finally:
        if trust_before is None:
            os.environ.pop(TRUST_ENV, None)
        else:
            os.environ[TRUST_ENV] = trust_before


if __name__ == "__main__":
    raise SystemExit(main())
