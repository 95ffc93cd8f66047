import json

import pytest

from pgan.bench.ablation import GRIDS, run_grid
from pgan.config import load_config
from pgan.errors import PganError


def _fake_train(calls):
    def train(cfg, resume):
        calls.append((cfg.model.variant, cfg.data.num_parts, cfg.run.seed, cfg.run.out_dir))
        m = {"mAP": 0.5 + 0.01 * cfg.run.seed + (0.1 if cfg.model.variant == "pgan" else 0.0),
             "rank1": 0.7, "rank5": 0.9, "mINP": 0.3}
        res = {"metrics": m, "train_seconds": 2.0}
        from pathlib import Path
        Path(cfg.run.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.run.out_dir) / "result.json").write_text(json.dumps(res))
        return res
    return train


def test_grid_runs_each_setting_and_seed_and_summarises(tmp_path):
    calls = []
    out = run_grid("variants", load_config(), tmp_path, seeds=(0, 1, 2), train_fn=_fake_train(calls))
    assert len(calls) == 12 and {c[0] for c in calls} == {"baseline", "grid", "nopam", "pgan"}
    assert len({c[3] for c in calls}) == 12  # one folder per run
    assert out["pgan"]["mAP_mean"] == pytest.approx(0.61)
    assert out["pgan"]["mAP_std"] == pytest.approx((2 / 3) ** 0.5 * 0.01)
    assert out["baseline"]["seeds"] == 3
    md = (tmp_path / "variants" / "variants.md").read_text()
    assert "Table III" in md and "| pgan | 61.0 ± 0.8 |" in md
    assert (tmp_path / "variants" / "variants.csv").read_text().count("\n") == 5
    # Finished runs are reused, not retrained.
    run_grid("variants", load_config(), tmp_path, seeds=(0, 1, 2), train_fn=_fake_train(calls))
    assert len(calls) == 12


def test_parts_grid_sets_d_and_unknown_grid():
    calls = []
    assert [s[1]["data.num_parts"] for s in GRIDS["parts"].settings] == [4, 6, 8, 10, 12]
    with pytest.raises(PganError, match="valid names: .*variants"):
        run_grid("tables", load_config(), "/tmp/x", train_fn=_fake_train(calls))


def test_runs_claimed_by_a_live_worker_are_skipped(tmp_path):
    import os

    busy = tmp_path / "variants" / "pgan_s0"
    busy.mkdir(parents=True)
    (busy / ".claim").write_text(str(os.getppid()))  # a live process that is not us
    stale = tmp_path / "variants" / "grid_s0"
    stale.mkdir(parents=True)
    (stale / ".claim").write_text("999999999")  # no such process: taken over
    calls = []
    out = run_grid("variants", load_config(), tmp_path, seeds=(0,), train_fn=_fake_train(calls))
    assert sorted(c[0] for c in calls) == ["baseline", "grid", "nopam"]
    assert "pgan" not in out and not (stale / ".claim").exists()


def test_summarise_only_trains_nothing(tmp_path):
    calls = []
    run_grid("variants", load_config(), tmp_path, seeds=(0,), train_fn=_fake_train(calls))
    (tmp_path / "variants" / "grid_s0" / "result.json").unlink()
    later = []
    out = run_grid("variants", load_config(), tmp_path, seeds=(0,), train_fn=_fake_train(later),
                   train_missing=False)
    assert later == [] and "grid" not in out and out["pgan"]["seeds"] == 1


def test_a_config_shared_by_two_grids_is_trained_once(tmp_path):
    base = load_config()
    assert base.data.num_parts == 8 and tuple(base.loss.terms) == ("ce", "f", "g", "p")
    calls = []
    losses = run_grid("losses", base, tmp_path, seeds=(0, 1), train_fn=_fake_train(calls))
    assert len(calls) == 8
    parts = run_grid("parts", base, tmp_path, seeds=(0, 1), train_fn=_fake_train(calls))
    assert len(calls) == 8 + 8  # D = 8 with all loss terms is the losses grid's last row, reused
    assert parts["D = 8"] == losses["L_c + L_f + L_g + L_p"]
    d8 = [c for c in calls if c[1] == 8 and "parts" in c[3]]
    assert d8 == []
    assert len(list((tmp_path / "_by_config").glob("*.txt"))) == 16


def test_cli_checks_its_arguments_and_summarises_without_training(tmp_path, run_cli, capsys):
    assert run_cli("bench", "ablation", "--dataset", "veri776", "--out", tmp_path) == 2
    assert "--config" in capsys.readouterr().err
    assert run_cli("bench", "ablation", "--config", "configs/veri776_pgan.yaml", "--out", tmp_path) == 2
    assert "built-in CPU recipe" in capsys.readouterr().err
    # Nothing finished yet: the table is written with no rows and nothing is trained.
    assert run_cli("bench", "ablation", "--dataset", "veri776", "--config", "configs/veri776_pgan.yaml",
                   "--grids", "lambda", "--seeds", "0", "--out", tmp_path, "--summarise-only") == 0
    assert "Cross-entropy weight" in capsys.readouterr().out
    assert (tmp_path / "lambda" / "lambda.md").is_file()
    assert not list((tmp_path / "lambda").glob("*/last.pt"))


def test_summary_keeps_the_ratio_without_wheels_and_the_wheel_rows(tmp_path):
    from pgan.bench.ablation import markdown_table, role_table, summarise

    def res(ratio, no_wheels, rim, plain):
        return {"metrics": {"mAP": 0.5, "rank1": 0.7, "rank5": 0.9, "mINP": 0.3, "attention_ratio": ratio,
                            "attention_ratio_no_wheels": no_wheels, "attention_rel_identity": 0.8,
                            "attention_rel_shared": 1.0, "attention_rel_identity_rim": rim,
                            "attention_rel_plain_wheel": plain}, "train_seconds": 1.0}

    row = summarise([res(2.0, 0.5, 3.0, 2.0), res(2.2, 0.7, 3.4, 1.0)])
    assert row["attention_ratio_no_wheels_mean"] == pytest.approx(0.6)
    assert row["attention_rel_identity_rim_mean"] == pytest.approx(3.2)
    assert row["attention_rel_plain_wheel_mean"] == pytest.approx(1.5)
    md = markdown_table({"pgan": row})
    assert "ratio w/o wheels" in md and "| 2.10 ± 0.10 | 0.60 ± 0.10 |" in md
    roles = role_table({"pgan": row, "baseline": summarise([{"metrics": {"mAP": 0.4}, "train_seconds": 1.0}])})
    assert "| identity rims | plain wheels |" in roles
    assert "| pgan | 0.80 ± 0.00 | 1.00 ± 0.00 | 3.20 ± 0.20 | 1.50 ± 0.50 | – |" in roles
    assert "| baseline | – | – | – | – | – |" in roles
    assert role_table({"baseline": summarise([{"metrics": {"mAP": 0.4}, "train_seconds": 1.0}])}) == ""
