"""The results page's tables (docs/results.md), generated from the raw JSON in ``docs/`` (never typed by hand).

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in docs/results.md; this
script rewrites what lies between them from the JSON the benchmark wrote, and ``--check`` only compares
(exit 1 and the names of stale tables when the page differs; the test suite runs the same comparison).

    python benchmarks/results_tables.py            # rewrite docs/results.md's generated tables
    python benchmarks/results_tables.py --check    # is docs/results.md in step with docs/*.json?
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pgan.utils.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def _pct(s: dict, key: str) -> str:
    m, sd = s.get(f"{key}_mean"), s.get(f"{key}_std")
    return "" if m is None else f"{100 * m:.1f} ± {100 * sd:.1f}"


def _ratio(s: dict | None, key: str = "attention_ratio") -> str:
    if s is None:
        return ""
    m, sd = s.get(f"{key}_mean"), s.get(f"{key}_std")
    if m is None:
        return "–"
    return "1.00" if abs(m - 1.0) < 1e-6 and sd < 1e-6 else f"{m:.2f} ± {sd:.2f}"  # nopam: 1 by construction


SYNTH_ROWS = (("baseline", "baseline"), ("grid", "grid (PAM over grid cells)"),
              ("nopam", "nopam (parts, equal weights)"), ("pgan", "pgan"),
              ("pgan (part_map = area)", "pgan, `model.part_map: area`"))


def synth_table(docs: Path) -> str:
    """The first 3-seed variants table, standard and hard (80 test identities) settings side by side."""
    std = json.loads((docs / "synth_variants.json").read_text())
    hard = json.loads((docs / "synth_variants_hard_80ids.json").read_text())
    lines = ["| variant | standard: mAP | standard: ratio | hard: mAP | hard: mINP | hard: ratio |",
             "|---|---|---|---|---|---|"]
    for key, label in SYNTH_ROWS:
        s, h = std.get(key), hard.get(key)
        cells = [_pct(s, "mAP") if s else "", _ratio(s), _pct(h, "mAP") if h else "", _pct(h, "mINP") if h else "",
                 _ratio(h)]
        lines.append(f"| {label} |" + "".join(f" {c} |" if c else " |" for c in cells))
    return "\n".join(lines) + "\n"


def _diff_rows(pairs: dict, shown: list[str], bold: tuple[str, ...] = ()) -> list[str]:
    lines = ["| paired difference (mAP points) | mean | 95% interval | seeds |", "|---|---|---|---|"]
    for name in shown:
        if name not in pairs:
            continue
        p = pairs[name]
        lo, hi = p["diff_ci95"]
        cells = [name + (" (diagnostic)" if p.get("post_hoc") else ""), f"{100 * p['diff_mean']:+.1f}",
                 "–" if lo is None or math.isnan(lo) else f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"]
        if name in bold:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + f" | {len(p['seeds'])} |")
    return lines


def _real_variant_rows(result: dict) -> list[str]:
    lines = ["| variant | mAP (%) | Rank-1 (%) | largest PAM weight (median image) | seeds |",
             "|---|---|---|---|---|"]
    for label, s in result["summary"].items():
        learned = result["design"]["variants"][label].get("model.variant") == "pgan"
        largest = f"{s['attention_max_mean']:.2f}" if learned and "attention_max_mean" in s else "–"
        lines.append(f"| {label} | {_pct(s, 'mAP')} | {100 * s['rank1_mean']:.1f} | {largest} "
                     f"| {len(s['seeds'])} |")
    return lines


# The pairs the README shows of the 5-epoch study (every pair is in docs/real_dev.md), the goal's in bold.
REAL_DEV_PAIRS = [
    "pgan, proposals - baseline", "pgan, dff - baseline", "pgan, proposals - nopam, proposals",
    "pgan, dff - nopam, dff", "baseline, 512-d - baseline", "pgan, proposals - baseline, 512-d",
    "pgan, proposals, 2C'=1280 - baseline", "pgan, dff - pgan, proposals", "pgan, proposals, +global - baseline",
    "pgan, proposals, +global - nopam, proposals, +global",
    "pgan, proposals, +global - head only (no parts), +global", "pgan, proposals, +global - pgan, proposals",
    "pgan, proposals, +global [global half] - baseline", "pgan, proposals, +global [fused half] - baseline"]


def real_dev_table(docs: Path) -> str:
    result = json.loads((docs / "real_dev.json").read_text())
    lines = _real_variant_rows(result) + [""] + _diff_rows(result["paired_mAP"], REAL_DEV_PAIRS,
                                                            ("pgan, proposals, +global - baseline",))
    return "\n".join(lines) + "\n"


def real_dev_24ep_table(docs: Path) -> str:
    result = json.loads((docs / "real_dev_24ep.json").read_text())
    pairs = result["paired_mAP"]
    shown = list(pairs)
    lines = _real_variant_rows(result) + [""] + _diff_rows(pairs, shown, ("pgan, proposals, +global - baseline",))
    return "\n".join(lines) + "\n"


def synth_paired_table(docs: Path) -> str:
    """The paired hard benchmark: per variant mean ± std, the ratios; every paired difference."""
    result = json.loads((docs / "synth_variants_hard.json").read_text())
    lines = ["| variant | mAP (%) | mINP (%) | ratio | ratio w/o wheels | seeds |", "|---|---|---|---|---|---|"]
    for label, s in result["summary"].items():
        parts = label not in ("baseline", "grid")
        ratios = [_ratio(s, k) if parts else "–" for k in ("attention_ratio", "attention_ratio_no_wheels")]
        lines.append(f"| {label} | {_pct(s, 'mAP')} | {_pct(s, 'mINP')} | {' | '.join(ratios)} | {s['seeds']} |")
    lines += [""] + _diff_rows(result["paired_mAP"], list(result["paired_mAP"]), ("pgan - nopam",))
    return "\n".join(lines) + "\n"


def custom_recipes_table(docs: Path) -> str:
    """The own-photo configs trained through the CLI on real-dev, beside the rows they are named after."""
    rows = json.loads((docs / "custom_recipes.json").read_text())["rows"]
    lines = ["| config | val mAP (%) | Rank-1 (%) | seed | named after (24-epoch study) "
             "| its 5 seeds: mean ± std (range) | inside the range |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['config']}` | {100 * r['mAP']:.1f} | {100 * r['rank1']:.1f} | {r['seed']} | "
                     f"{r['named_after']} | {100 * r['table_mean']:.1f} ± {100 * r['table_std']:.1f} "
                     f"({100 * r['table_min']:.1f}-{100 * r['table_max']:.1f}) | "
                     f"{'yes' if r['within_range'] else 'no'} |")
    return "\n".join(lines) + "\n"


LEGACY_SCALE_SETTING = "HNSW32,Flat"  # the first scale runs' rows predate the "setting" key: all HNSW


def scale_index(r: dict) -> str:
    """A scale row's index: the setting asked for and, where it differs, what the segments hold."""
    if r["backend"] != "faiss":
        return r.get("index_type") or "HNSW"
    setting = r.get("setting", LEGACY_SCALE_SETTING)
    types = ", ".join(r.get("segment_types") or {})
    return setting if not types or types == setting else f"{setting}: {types}"


def search_scale_table(docs: Path) -> str:
    """The gallery-at-scale rows of docs/search_speed.json (``benchmarks/search_speed.py --phase scale``)."""
    rows = json.loads((docs / "search_speed.json").read_text())["scale_rows"]
    lines = ["| backend | index | vectors | n | filter | recall@10 | product ms (median / p95) "
             "| local bytes per item |",
             "|---|---|---|---|---|---|---|---|"]
    adds = []
    for r in rows:
        if "add_1000_s" in r:
            adds.append(f"{r['backend']} {r.get('setting', LEGACY_SCALE_SETTING)} {r['generator']} {r['n']:,}: "
                        f"{r['add_1000_s']:.2f} s")
            continue
        f = r.get("filter")
        where = f"{f['on']}, {100 * f['selectivity']:g}% of items" if f else "none"
        ms = r["product_ms"]
        lines.append(f"| {r['backend']} | {scale_index(r)} | {r['generator']} | {r['n']:,} | {where} | "
                     f"{r['recall_at_10']:.4f} | {ms['median']:.2f} / {ms['p95']:.2f} | "
                     f"{r['bytes_per_item']['local_disk']:,.0f} |")
    return "\n".join(lines) + "\n\nAdding 1,000 items: " + "; ".join(adds) + ".\n"


def serve_load_table(docs: Path) -> str:
    """The load test's table, as benchmarks/serve_load.py wrote it beside its raw figures."""
    return json.loads((docs / "serve_load.json").read_text())["table_md"].strip() + "\n"


TABLES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "synth": ("synth_variants_hard_80ids.json", synth_table),
    "real_dev": ("real_dev.json", real_dev_table),
    "real_dev_24ep": ("real_dev_24ep.json", real_dev_24ep_table),
    "synth_paired": ("synth_variants_hard.json", synth_paired_table),
    "custom_recipes": ("custom_recipes.json", custom_recipes_table),
    "search_scale": ("search_speed.json", search_scale_table),
    "serve_load": ("serve_load.json", serve_load_table),
}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end: {name} -->)", re.S)


def regenerate(page: str, docs: Path) -> tuple[str, list[str]]:
    """``page`` with every generated table rewritten from ``docs``, and the names of the tables that
    changed. A table whose markers are absent, or whose JSON is missing, is left alone."""
    changed = []
    for name, (needs, make) in TABLES.items():
        pattern = _block(name)
        m = pattern.search(page)
        if m is None or not (docs / needs).is_file():
            continue
        text = make(docs)
        if m.group(2) != text:
            changed.append(name)
            page = page[:m.start(2)] + text + page[m.end(2):]
    return page, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--docs", default=str(ROOT / "docs"))
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a table is stale")
    args = ap.parse_args(argv)
    path = Path(args.page)
    text, changed = regenerate(path.read_text(), Path(args.docs))
    if args.check:
        if changed:
            print("stale results tables (run benchmarks/results_tables.py): " + ", ".join(changed))
            return 1
        return 0
    if changed:
        atomic_write_text(path, text)
    print("rewrote: " + (", ".join(changed) if changed else "nothing (in step)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
