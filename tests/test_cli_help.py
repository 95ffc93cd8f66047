"""Every ``pgan`` sub-command's help follows one set of rules: it answers without importing torch or any
other heavy module, shows its defaults and one example, gives every option a help text, and names each
concept (parts per image, results per query, device, output, part source) one way."""

import argparse
import subprocess
import sys

import pytest

from pgan.cli import build_parser, main
from pgan.cli_options import DEVICE_HELP, PARTS_HELP, HelpFormatter

# Names that meant one thing in one command and another elsewhere, or a concept under a second name.
RETIRED = {"--topk", "--max-topk", "--k", "--d", "--max-boxes"}
# The commands where --images means "the photos to read (folder or CSV)"; anywhere else it is a retired meaning.
IMAGES_COMMANDS = {"data csv", "index build", "index add"}
HEAVY = ("torch", "torchvision", "faiss", "fastapi", "starlette", "uvicorn", "pymilvus", "onnxruntime", "PIL",
         "matplotlib", "scipy", "sklearn")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every parser: the root, the groups and the leaves."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _leaves():
    return [(" ".join(path), p) for path, p in _walk(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def _options(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
            and a.help is not argparse.SUPPRESS]


LEAVES = _leaves()


def test_the_parser_has_every_command():
    names = {name for name, _ in LEAVES}
    assert {"data csv", "train", "eval", "demo", "synth", "index build", "index add", "index info", "search",
            "serve", "export onnx", "parts proposals", "parts discover", "viz ranks", "bench ablation"} <= names
    assert len(names) >= 23


@pytest.mark.parametrize("name,parser", LEAVES, ids=[n for n, _ in LEAVES])
def test_each_command_has_help_defaults_and_an_example(name, parser):
    assert issubclass(parser.formatter_class, HelpFormatter)
    assert parser.epilog and parser.epilog.startswith("example:"), name
    assert f"pgan {name}" in parser.epilog
    text = parser.format_help()
    for action in _options(parser) + [a for a in parser._actions if not a.option_strings
                                      and not isinstance(a, argparse._SubParsersAction)]:
        assert action.help, f"pgan {name} {action.option_strings or action.dest}: no help"
        default = action.default
        if default not in (None, False, [], ()) and action.option_strings:
            formatted = parser._get_formatter()._get_help_string(action)
            assert "default" in formatted, f"pgan {name} {action.option_strings}: default {default!r} not shown"
    assert "(default:" in text or not any(a.default not in (None, False) for a in _options(parser))


@pytest.mark.parametrize("name,parser", LEAVES, ids=[n for n, _ in LEAVES])
def test_one_name_per_concept(name, parser):
    flags = {s for a in _options(parser) for s in a.option_strings}
    assert not flags & RETIRED, f"pgan {name}: {sorted(flags & RETIRED)}"
    if "--images" in flags:
        assert name in IMAGES_COMMANDS, f"pgan {name}: --images means the photos to read, nothing else"
    if "--min-score" in flags:
        assert name == "parts extract"  # detector confidence; search's cosine floor is --min-similarity
    for action in _options(parser):
        if "--device" in action.option_strings:
            assert action.default == "auto" and action.help == DEVICE_HELP, name
        if "--out" in action.option_strings:
            assert action.metavar in ("DIR", "FILE"), name
            assert action.help.startswith("folder: " if action.metavar == "DIR" else "file: "), name
        if "--parts" in action.option_strings:
            assert action.help == PARTS_HELP, name
        if "--num-parts" in action.option_strings or "--top-k" in action.option_strings:
            assert action.type is int and action.metavar in ("N", "K"), name


def test_every_help_exits_zero_and_names_the_command(capsys):
    for name, _ in LEAVES:
        with pytest.raises(SystemExit) as exc:
            main([*name.split(), "--help"])
        assert exc.value.code == 0
        assert f"usage: pgan {name}" in capsys.readouterr().out.replace("\n", " ")


def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys\nfrom pgan.cli import build_parser\n"
            "p = build_parser()\np.format_help()\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_static_choices_match_the_registries():
    from pgan.discovery_cli import DISCOVERY_CHOICES
    from pgan.parts.discovery import DISCOVERY_METHODS

    assert tuple(DISCOVERY_CHOICES) == tuple(DISCOVERY_METHODS)


def test_defaults_formatter_leaves_required_and_switches_alone():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--a", required=True, help="needed")
    p.add_argument("--b", action="store_true", help="a switch")
    p.add_argument("--c", type=int, default=3, help="a number")
    p.add_argument("--d", nargs="+", default=["x", "y"], help="names")
    text = " ".join(p.format_help().split())
    assert "needed (default" not in text and "a switch (default" not in text
    assert "a number (default: 3)" in text and "names (default: x y)" in text
