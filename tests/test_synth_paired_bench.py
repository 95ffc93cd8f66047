"""benchmarks/synth_paired.py: per-seed rows, paired differences with intervals, the seed plan (no training)."""

import json

import pytest

from bench_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("synth_paired")


def _fake_runs(bench, out, maps):
    for (label, seed), m in maps.items():
        run = bench.run_dir(out, label, seed)
        run.mkdir(parents=True)
        metrics = {"mAP": m, "rank1": m, "mINP": m / 2, "attention_ratio": 2.0, "attention_ratio_no_wheels": 0.5,
                   "attention_rel_identity": 1.5, "attention_rel_shared": 0.7}
        (run / "result.json").write_text(json.dumps({"metrics": metrics, "train_seconds": 10.0}))


def test_rows_pairs_and_the_seed_plan_from_the_pilot(bench, tmp_path):
    maps = {}
    for seed, (p, n, o) in enumerate([(0.62, 0.60, 0.63), (0.61, 0.60, 0.64), (0.60, 0.61, 0.62)]):
        maps |= {("pgan", seed): p, ("nopam", seed): n, ("oracle", seed): o, ("baseline", seed): 0.55}
    _fake_runs(bench, tmp_path, maps)
    result = bench.collect(tmp_path)
    assert len(result["rows"]) == 12 and result["rows"][0]["variant"] == "pgan"
    pn = result["paired_mAP"]["pgan - nopam"]
    assert pn["diffs"] == pytest.approx([0.02, 0.01, -0.01]) and pn["diff_mean"] == pytest.approx(0.02 / 3)
    assert result["paired_mAP"]["oracle - nopam"]["diff_mean"] == pytest.approx(0.0267, abs=1e-4)
    assert "grid - baseline" not in result["paired_mAP"]  # no grid runs
    sd = pn["diff_sd"]
    plan = result["plan"]
    assert plan["pilot_diff_sd"] == pytest.approx(sd) and plan["seeds"] == plan["seeds_needed"] >= 3
    assert result["summary"]["pgan"]["attention_ratio_no_wheels_mean"] == pytest.approx(0.5)
    md = bench.markdown(result)
    assert "| pgan - nopam | +0.7 |" in md and "Seed plan:" in md
    assert "| pgan | 1.50 ± 0.00 | 0.70 ± 0.00 |" in md  # relative weight by role, identity and shared


def test_rows_of_gone_runs_are_carried_and_the_plan_waits_for_the_pilot(bench, tmp_path):
    _fake_runs(bench, tmp_path, {("pgan", 0): 0.6, ("nopam", 0): 0.58})
    earlier = [{"variant": "pgan", "seed": 1, "mAP": 0.61, "train_seconds": 9.0},
               {"variant": "nopam", "seed": 1, "mAP": 0.60, "train_seconds": 9.0}]
    result = bench.collect(tmp_path, earlier)
    assert [r.get("carried", False) for r in result["rows"]] == [False, False, True, True]
    assert result["paired_mAP"]["pgan - nopam"]["seeds"] == [0, 1]
    assert result["plan"]["seeds"] is None  # seed 2 of the pilot is missing


def test_the_design_enlarges_only_the_test_split_and_runs_the_oracle(bench, tmp_path):
    assert bench.HARD_SYNTH == load_benchmark("synth_variants").HARD_SYNTH  # the hard setting, unchanged
    assert bench.PAIRED_SYNTH["num_test_ids"] == 320
    assert {k: v for k, v in bench.PAIRED_SYNTH.items() if k != "num_test_ids"} == \
        {k: v for k, v in bench.HARD_SYNTH.items() if k != "num_test_ids"}
    cfg = bench.config_for("oracle", 3, tmp_path / "data", tmp_path)
    assert cfg.model.variant == "oracle" and cfg.run.seed == 3 and cfg.run.eval_every == 0
    assert cfg.run.out_dir == str(bench.run_dir(tmp_path, "oracle", 3))


def test_a_worker_skips_runs_the_docs_already_hold_and_switches_unless_named(bench, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(bench, "train", lambda cfg, resume: trained.append(cfg.run.seed) or
                        {"metrics": {"mAP": 0.5}})
    monkeypatch.setattr(bench, "config_for", lambda label, seed, data, out: _Cfg(label, seed))
    done = frozenset({("pgan", 0), ("nopam", 0)})  # rows carried from another machine's runs
    bench.work(tmp_path, tmp_path, [0, 1], ["pgan", "nopam"], done)
    assert trained == [("pgan", 1), ("nopam", 1)]
    trained.clear()
    bench.work(tmp_path, tmp_path / "all", [0])  # the default plan: no switches
    assert set(trained) == {(v, 0) for v in bench.VARIANTS if v not in bench.SWITCHES}
    trained.clear()
    bench.work(tmp_path, tmp_path / "sw", [0], ["pgan-dropout"])
    assert trained == [("pgan-dropout", 0)]


class _Cfg:
    def __init__(self, label, seed):
        self.run = type("Run", (), {"seed": (label, seed)})()


def test_the_paired_benchmark_owns_the_hard_settings_file_of_record(bench):
    variants = load_benchmark("synth_variants")
    assert bench.DOC_NAME == "synth_variants_hard.json"
    assert variants.output_stem("variants", "hard") == "synth_variants_hard_80ids"  # the first 3-seed design
    assert variants.output_stem("variants", "standard") == "synth_variants"
    assert variants.output_stem("losses", "hard") == "synth_losses_hard"
    assert variants.output_stem("variants", "real-like") == "synth_variants_real-like"


def test_the_summary_reads_rows_under_the_benchmarks_old_name(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    row = {"variant": "pgan", "seed": 0, "mAP": 0.61, "train_seconds": 9.0}
    (tmp_path / bench.LEGACY_DOC_NAME).write_text(json.dumps({"rows": [row]}))
    bench.main(["--summarise-only", "--docs", str(tmp_path), "--out", str(tmp_path / "runs")])
    written = json.loads((tmp_path / bench.DOC_NAME).read_text())
    assert written["rows"] == [{**row, "carried": True}] and "| pgan |" in capsys.readouterr().out
