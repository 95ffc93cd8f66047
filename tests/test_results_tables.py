"""The results page's tables (docs/results.md) are generated from docs/*.json (benchmarks/results_tables.py)."""

import json
from pathlib import Path

import pytest

from bench_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    return load_benchmark("results_tables")


def test_the_results_page_is_in_step_with_the_json_in_docs(tables):
    page = (ROOT / "docs" / "results.md").read_text()
    for name in ("synth", "real_dev", "real_dev_24ep", "synth_paired", "custom_recipes", "search_scale",
                 "serve_load"):
        assert f"<!-- generated: {name} -->" in page and f"<!-- end: {name} -->" in page
    _, changed = tables.regenerate(page, ROOT / "docs")
    assert changed == [], f"results tables {changed} differ from docs/*.json: run benchmarks/results_tables.py"


def test_a_stale_table_is_found_and_rewritten_from_the_json(tables, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    result = json.loads((ROOT / "docs" / "real_dev.json").read_text())
    result["summary"]["baseline"]["mAP_mean"] = 0.5  # the benchmark wrote new figures
    (docs / "real_dev.json").write_text(json.dumps(result))
    readme = "intro\n<!-- generated: real_dev -->\nold table\n<!-- end: real_dev -->\ntail\n"
    text, changed = tables.regenerate(readme, docs)
    assert changed == ["real_dev"]
    assert text.startswith("intro\n<!-- generated: real_dev -->\n| variant | mAP (%) |")
    assert "| baseline | 50.0 ± 0.4 |" in text and text.endswith("<!-- end: real_dev -->\ntail\n")
    readme_file = tmp_path / "README.md"
    readme_file.write_text(readme)
    assert tables.main(["--page", str(readme_file), "--docs", str(docs), "--check"]) == 1
    assert readme_file.read_text() == readme  # --check writes nothing
    assert tables.main(["--page", str(readme_file), "--docs", str(docs)]) == 0
    assert readme_file.read_text() == text
    assert tables.main(["--page", str(readme_file), "--docs", str(docs), "--check"]) == 0


def test_tables_without_markers_or_json_are_left_alone(tables, tmp_path):
    readme = "no markers here\n<!-- generated: real_dev_24ep -->\nkeep\n<!-- end: real_dev_24ep -->\n"
    assert tables.regenerate(readme, tmp_path) == (readme, [])  # no docs/real_dev_24ep.json there


def test_the_paired_synthetic_table_shows_ratios_for_part_variants_and_every_pair(tables, tmp_path):
    summary = {"pgan": {"mAP_mean": 0.35, "mAP_std": 0.01, "mINP_mean": 0.1, "mINP_std": 0.0, "seeds": 3,
                        "attention_ratio_mean": 2.3, "attention_ratio_std": 0.1,
                        "attention_ratio_no_wheels_mean": 0.2, "attention_ratio_no_wheels_std": 0.05},
               "baseline": {"mAP_mean": 0.30, "mAP_std": 0.02, "mINP_mean": 0.1, "mINP_std": 0.0, "seeds": 3}}
    pairs = {"pgan - baseline": {"seeds": [0, 1, 2], "diffs": [0.04, 0.05, 0.06], "diff_mean": 0.05,
                                 "diff_ci95": [0.025, 0.075]}}
    (tmp_path / "synth_variants_hard.json").write_text(json.dumps({"summary": summary, "paired_mAP": pairs}))
    text = tables.synth_paired_table(tmp_path)
    assert "| pgan | 35.0 ± 1.0 | 10.0 ± 0.0 | 2.30 ± 0.10 | 0.20 ± 0.05 | 3 |" in text
    assert "| baseline | 30.0 ± 2.0 | 10.0 ± 0.0 | – | – | 3 |" in text
    assert "| pgan - baseline | +5.0 | [+2.5, +7.5] | 3 |" in text
