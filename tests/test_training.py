import csv
import json

import pytest
import torch

from pgan.cli import main
from pgan.config import load_config
from pgan.engine.train import train
from pgan.models.trained import load_checkpoint, load_trained


def _cfg(root, out, variant="pgan", epochs=6, **over):
    items = [f"data.root={root}", "data.input_size=[64, 64]", "data.cache_images=true", "data.p=4",
             "data.k=4", "data.workers=1", "model.backbone=resnet18", "model.pretrained=false",
             f"model.variant={variant}", "model.reduced_dim=32", "optim.lr=1e-3", f"optim.epochs={epochs}",
             "optim.warmup_epochs=0", "optim.milestones=[100]", f"run.out_dir={out}", "run.progress=false"]
    items += [f"{k}={v}" for k, v in over.items()]
    return load_config(None, items)


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_tiny_training_run_loss_decreases_and_evaluates(tiny_synth, tmp_path):
    result = train(_cfg(tiny_synth, tmp_path / "run", epochs=8))
    losses = _losses(tmp_path / "run")
    assert len(losses) == 8
    assert losses[-1] < 0.8 * losses[0], losses
    m = result["metrics"]
    assert 0.0 <= m["mAP"] <= 1.0 and 0.0 <= m["rank1"] <= m["rank5"] <= 1.0
    for name in ("last.pt", "config.yaml", "run_info.json", "result.json"):
        assert (tmp_path / "run" / name).is_file()
    assert not (tmp_path / "run" / "best.pt").exists()  # no model selection on the test split
    model, cfg = load_trained(tmp_path / "run" / "last.pt")
    assert cfg.model.variant == "pgan" and model.num_parts == 8


def test_resume_continues_exactly(tiny_synth, tmp_path):
    train(_cfg(tiny_synth, tmp_path / "full", epochs=3))
    train(_cfg(tiny_synth, tmp_path / "part", epochs=2))
    train(_cfg(tiny_synth, tmp_path / "part", epochs=3), resume=True)
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert len(part) == 3
    assert part == pytest.approx(full, rel=1e-4)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


class _Killed(Exception):
    """Stands in for a kill right after a mid-epoch checkpoint was written."""


def test_mid_epoch_resume_continues_exactly(tiny_synth, tmp_path, monkeypatch):
    """Stopped at step 2 of epoch 2 (of 4 steps) right after its checkpoint, then resumed: the same
    losses and weights as a run never interrupted, and only the 2 missing steps are trained."""
    import pgan.engine.trainer as trainer_mod

    train(_cfg(tiny_synth, tmp_path / "full", epochs=3))
    real_save, real_step = trainer_mod.save_checkpoint, trainer_mod.Trainer._step

    def save_then_die(path, **payload):
        real_save(path, **payload)
        if payload["epoch"] == 1 and payload["step_in_epoch"] == 2:
            raise _Killed

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_then_die)
    cfg = _cfg(tiny_synth, tmp_path / "part", epochs=3, **{"run.checkpoint_every": 2})
    with pytest.raises(_Killed):
        train(cfg)
    ckpt = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 2)
    assert ckpt["partial_epoch"]["sampler"] == {"epoch": 1, "start": 2} and len(ckpt["history"]) == 1
    monkeypatch.setattr(trainer_mod, "save_checkpoint", real_save)
    steps = []

    def counted_step(self, batch):
        steps.append(len(batch["pid"]))
        return real_step(self, batch)

    monkeypatch.setattr(trainer_mod.Trainer, "_step", counted_step)
    train(cfg, resume=True)
    assert len(steps) == 2 + 4  # the rest of epoch 2, then epoch 3
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert len(part) == 3 and part == pytest.approx(full, rel=1e-6)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tiny_oracle_run_weights_parts_by_their_ground_truth_roles(tiny_synth, tmp_path):
    result = train(_cfg(tiny_synth, tmp_path / "oracle", variant="oracle", epochs=1))
    m = result["metrics"]
    assert 0.0 <= m["mAP"] <= 1.0
    # Identity parts get e x a shared part's weight in every image, so the ratio of mean relative weights
    # is well above 1 (not exactly e: images differ in their numbers of parts per role).
    assert m["attention_ratio"] > 1.5, m
    # Without wheels too (pgan eval reports both); the query's identity rims are a row of their own,
    # weighted like the other identity parts, well above the shared ones.
    assert m["attention_ratio_no_wheels"] > 1.5, m
    assert m["attention_rel_identity_rim"] > 1.5 * m["attention_rel_shared"], m
    model, cfg = load_trained(tmp_path / "oracle" / "last.pt")
    assert cfg.model.variant == "oracle" and model.pam is None


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "data.root=/does/not/exist", "model.pretrained=false", "run.progress=false",
                 f"run.out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    assert main(["train", "model.variant=magic"]) == 2
    assert "valid names: baseline, grid, nopam, oracle, pgan" in capsys.readouterr().err
    assert main(["train", "optim.lr=fast"]) == 2
    assert "optim.lr: expected a float" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert main(["train", "--resume", f"run.out_dir={tmp_path / 'empty'}"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline", "grid", "nopam"])
def test_cli_train_and_eval_each_variant(tiny_synth, tmp_path, variant):
    out = tmp_path / variant
    args = ["train", f"data.root={tiny_synth}", "data.input_size=[64,64]", "data.cache_images=true", "data.p=4",
            "data.k=4", "model.backbone=resnet18", "model.pretrained=false", f"model.variant={variant}",
            "model.reduced_dim=32", "optim.epochs=2", f"run.out_dir={out}", "run.progress=false"]
    assert main(args) == 0
    assert main(["eval", "--checkpoint", str(out / "last.pt")]) == 0
    metrics = json.loads((out / "eval.json").read_text())
    assert set(metrics) >= {"mAP", "rank1", "rank5", "mINP"}


def test_tensorboard_events_hold_losses_lr_and_metrics(tiny_synth, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(_cfg(tiny_synth, run, epochs=2, **{"run.tensorboard": "true", "run.eval_every": 1}))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/mAP", "eval/rank1"} <= tags
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    for event, row in zip(loss, rows):
        assert event.value == pytest.approx(float(row["loss"]), rel=1e-4)
    assert acc.Scalars("eval/mAP")[-1].value == pytest.approx(float(rows[-1]["eval_mAP"]), rel=1e-4)
    assert "train/epoch" not in tags
