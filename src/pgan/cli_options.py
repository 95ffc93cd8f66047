"""What every ``pgan`` sub-command shares: the help formatter, one example per command, and the options
that mean the same thing everywhere (one name and one default per concept).

Light on purpose: building the whole parser imports only the standard library and this package's
``*cli`` modules, so ``pgan --help`` answers at once. Heavy modules (torch, faiss, FastAPI, ...) are
imported inside the command functions.

The names, for anyone adding a command:

* ``--num-parts N``: part boxes per image (the paper's D where the model uses them);
* ``--top-k N``: results per query;
* ``--device``: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:N]``;
* ``--out``: what the command makes, a folder (metavar ``DIR``) or a file (metavar ``FILE``); the help
  says which;
* ``--parts``: where the part boxes of new photos come from (:data:`PARTS_HELP`, the same everywhere);
* ``--quiet``: no progress bar; ``--threads N``: torch's CPU threads.
"""

from __future__ import annotations

import argparse

__all__ = ["DEVICE_HELP", "HelpFormatter", "PARTS_HELP", "add_command", "add_device", "add_group", "add_num_parts",
           "add_out", "add_parts", "add_quiet", "add_threads", "add_top_k", "set_torch_threads"]

PARTS_HELP = ("part boxes of new photos: proposals | grid | dff | kmeans (the model's fitted basis) | model "
              "(the model's own box head, from model.box_head=true) | a *.basis.npz file | a part-detector "
              "checkpoint | a part-box file; default: model for a box-head model, else the model's own part "
              "source (a model trained on a part file boxes new photos with proposals)")
DEVICE_HELP = "auto (CUDA when present, else CPU) | cpu | cuda[:N]"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and example's line breaks and appends ``(default: X)`` to every option
    with a default worth showing (not None, not a switch's False, not already named in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        if isinstance(default, (list, tuple)):
            if not default:
                return text
            default = " ".join(map(str, default))
        return f"{text} (default: {default})"


def add_command(sub: argparse._SubParsersAction, name: str, *, help: str, example: str | list[str],
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command with pgan's formatter and an ``example:`` epilog (one command line or several)."""
    lines = [example] if isinstance(example, str) else example
    return sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:],
                          formatter_class=HelpFormatter,
                          epilog="example:\n" + "\n".join(f"  {line}" for line in lines))


def add_group(sub: argparse._SubParsersAction, name: str, *, help: str, dest: str,
              metavar: str) -> argparse._SubParsersAction:
    """A command group (``pgan parts ...``); its own help lists the members with one example each."""
    group = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:], formatter_class=HelpFormatter)
    return group.add_subparsers(dest=dest, required=True, metavar=metavar)


def add_out(p: argparse.ArgumentParser, kind: str, help: str, required: bool = True, **kwargs) -> None:
    """``--out``: ``kind`` is "folder" or "file"; the metavar and the help say which."""
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    p.add_argument("--out", required=required, metavar="DIR" if kind == "folder" else "FILE",
                   help=f"{kind}: {help}", **kwargs)


def add_num_parts(p: argparse.ArgumentParser, default: int, help: str) -> None:
    p.add_argument("--num-parts", type=int, default=default, metavar="N", help=help)


def add_top_k(p: argparse.ArgumentParser, default: int, help: str = "results per query") -> None:
    p.add_argument("--top-k", type=int, default=default, metavar="K", help=help)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (unset: torch's own choice)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parts", metavar="SOURCE", help=PARTS_HELP)


def set_torch_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None: leave torch's default); one clear line for a bad value."""
    if threads is None:
        return
    from pgan.errors import PganError

    if threads < 1:
        raise PganError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
