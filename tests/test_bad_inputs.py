"""Every bad input of issue 13 in one place: what each one gets, and that nothing already written is lost.

Sections follow the README's "What pgan guarantees": (1) loading never runs code from a file,
(2) derived part files never pass for ground truth, (3) a refused resume leaves the run folder
byte-identical, (4) one writer per run folder, (5) empty splits are found before the first step,
(6)-(7) config values and YAML errors are one line naming the key / file:line:column, (8) the rest.
"""

import csv
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pgan.bench.ablation import claim_run
from pgan.config import load_config
from pgan.data.datasets import read_dataset
from pgan.data.datasets.custom_csv import read_custom_csv
from pgan.detection.extract import detector_part_file
from pgan.detection.model import read_checkpoint
from pgan.engine.build import build_part_source, default_part_file, validate_config
from pgan.engine.checkpoint import rng_state, set_rng_state
from pgan.engine.run_folder import LOCK_NAME, RunLock
from pgan.engine.train import train
from pgan.errors import PganError
from pgan.models.trained import load_checkpoint, load_trained
from pgan.parts.boxfile import part_file_kind, read_part_file
from pgan.parts.proposals import propose_parts
from pgan.parts.sources import build_source
from pgan.utils.safe_load import TRUST_ENV
from test_training import _cfg, _losses


def _run_cfg(root, out, variant="baseline", epochs=1, **over):
    return _cfg(root, out, variant=variant, epochs=epochs, **over)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_csv(path: Path, records: list[tuple[Path, int, int, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "vehicle_id", "camera_id", "split"])
        for p, pid, cam, split in records:
            w.writerow([str(p), pid, cam, split])
    return path


def _synth_rows(root, splits=("train", "query", "gallery")):
    ds = read_dataset("synth", root)
    return [(r.path, r.pid, r.camid, split) for split in splits for r in getattr(ds, split)]


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    """One finished 1-epoch baseline run (relative paths resolved by the trainer)."""
    out = tmp_path_factory.mktemp("bad_inputs") / "run"
    train(_run_cfg(tiny_synth, out))
    return out


# --------------------------------------------------------------------------- 1. safe loading
class _Evil:
    """Unpickling this calls ``open(marker, "w")``: it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_crafted_pickle_never_runs(tmp_path, run_cli, capsys, fmt):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"model": _Evil(marker), "config": {}, "num_classes": 2}
    if fmt == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    # A torch file names the refused global and the opt-in; a bare pickle is not a checkpoint at all.
    expect = r"\(io.open; .*--trust-checkpoint" if fmt == "torch" else "not a PyTorch checkpoint"
    with pytest.raises(PganError, match=expect):
        load_checkpoint(evil)
    with pytest.raises(PganError, match=expect):
        read_checkpoint(evil)  # the part detector's loader
    assert run_cli("eval", "--checkpoint", evil) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pgan: error: ")
    assert run_cli("parts", "extract", "--checkpoint", evil, "--dataset", "synth", "--root", tmp_path) == 2
    assert not marker.exists()


def test_new_checkpoints_load_with_weights_only(trained):
    ckpt = torch.load(trained / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and isinstance(ckpt["rng"]["numpy"], dict)


def test_rng_state_round_trips_in_both_formats():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    import random

    old = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    x = np.random.rand(2)
    set_rng_state(old)  # the tuple form of checkpoints written before the safe format
    assert np.array_equal(np.random.rand(2), x)


def test_old_format_needs_explicit_trust(trained, tmp_path, caplog, monkeypatch, run_cli, capsys):
    import random

    ckpt = load_checkpoint(trained / "last.pt")
    ckpt["rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                   "cuda": None}
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    with pytest.raises(PganError, match=r"trust=True"):
        load_checkpoint(old)
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(old, trust=True)["epoch"] == 1
    assert "full unpickler" in caplog.text
    monkeypatch.setenv(TRUST_ENV, "1")
    assert load_checkpoint(old)["epoch"] == 1
    monkeypatch.delenv(TRUST_ENV)
    assert run_cli("--trust-checkpoint", "eval", "--checkpoint", old, "--out", tmp_path / "e.json") == 0
    assert TRUST_ENV not in os.environ  # the CLI flag does not leak into the process
    capsys.readouterr()


def test_checkpoint_that_is_not_a_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(PganError, match="holds a list, not a pgan checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PganError, match="cannot read checkpoint .*not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


# --------------------------------------------------------------------------- 2. part sources
def test_proposals_default_is_a_derived_file_in_the_run(tiny_synth, tmp_path):
    before = sorted(p.name for p in tiny_synth.iterdir())
    cfg = _run_cfg(tiny_synth, tmp_path / "run", variant="pgan", **{"data.part_source": "proposals"})
    path = Path(default_part_file(cfg))
    assert path == tmp_path / "run" / "parts" / "parts_proposals.jsonl"
    build_part_source(cfg)
    labels = {b.label for item in read_part_file(path).values() for b in item.boxes}
    assert labels == {"proposal"}  # not the ground truth's part classes
    assert sorted(p.name for p in tiny_synth.iterdir()) == before  # nothing written into the dataset


def test_proposals_on_a_csv_dataset(tiny_synth, tmp_path):
    csv_path = _write_csv(tmp_path / "mine.csv", _synth_rows(tiny_synth))
    cfg = _run_cfg(csv_path, tmp_path / "run", variant="pgan",
                   **{"data.dataset": "custom", "data.part_source": "proposals",
                      "data.part_cache": tmp_path / "cache"})
    build_part_source(cfg)  # was: FileExistsError on the CSV path
    assert (tmp_path / "cache" / "parts_proposals.jsonl").is_file()
    gt_cfg = _run_cfg(csv_path, tmp_path / "run", variant="pgan", **{"data.dataset": "custom"})
    assert default_part_file(gt_cfg) == str(tmp_path / "mine.parts_gt.jsonl")  # beside the CSV, not under it


def test_no_source_reads_another_sources_file(tiny_synth, tmp_path):
    gt = tiny_synth / "parts_gt.jsonl"
    gt_bytes = gt.read_bytes()
    for source in ("proposals", "detector"):
        with pytest.raises(PganError, match="marks it as the ground-truth part file"):
            build_source(source, part_file=gt, dataset="synth", root=tiny_synth)
    with pytest.raises(PganError, match="marks it as the proposals part file"):
        build_source("detector", part_file=tmp_path / "parts_proposals.jsonl")
    with pytest.raises(PganError, match=r"needs part_file \(data.part_file: the file 'pgan parts extract"):
        build_source("detector")
    with pytest.raises(PganError, match="ground-truth"):
        propose_parts("synth", str(tiny_synth), str(tmp_path / "parts_gt.jsonl"), progress=False)
    assert gt.read_bytes() == gt_bytes
    cfg = _run_cfg(tiny_synth, tmp_path / "run", variant="pgan", **{"data.part_source": "detector"})
    with pytest.raises(PganError, match="needs part_file"):
        build_part_source(cfg)  # was: the ground truth, silently


def test_detector_part_file_names_its_detector(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"detector A")
    (tmp_path / "b.pt").write_bytes(b"detector B")
    a, b = detector_part_file(tmp_path / "a.pt", tmp_path), detector_part_file(tmp_path / "b.pt", tmp_path)
    assert a.parent == tmp_path and a.name.startswith("parts_detector-") and a.suffix == ".jsonl" and a != b
    assert part_file_kind(a) == "detector" and part_file_kind("x/parts_gt.jsonl") == "file"
    assert part_file_kind("my_boxes.jsonl") is None


# --------------------------------------------------------------------------- 3. resume
def test_refused_resume_leaves_the_run_folder_byte_identical(trained):
    names = ("config.yaml", "run_info.json", "last.pt", "metrics.csv")
    before = {n: (trained / n).read_bytes() for n in names}
    cfg = _run_cfg(Path(load_config(trained / "config.yaml").data.root), trained, variant="pgan", epochs=2)
    with pytest.raises(PganError, match=r"model.variant='baseline' \(now 'pgan'\)") as exc:
        train(cfg, resume=True)
    assert "\n" not in str(exc.value)
    assert {n: (trained / n).read_bytes() for n in names} == before
    assert not (trained / LOCK_NAME).exists()


# --------------------------------------------------------------------------- 4. locks
def test_second_trainer_on_a_locked_folder_refuses(tiny_synth, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(f'{{"pid": {os.getppid()}, "host": "{socket.gethostname()}"}}')
    with pytest.raises(PganError, match=f"in use by process {os.getppid()}"):
        train(_run_cfg(tiny_synth, run))
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    with RunLock(tmp_path / "other"), pytest.raises(PganError, match="in use by process"):
        RunLock(tmp_path / "other").acquire()  # also within one process
    assert not (tmp_path / "other" / LOCK_NAME).exists()


def test_stale_lock_and_temporaries_are_taken_over(tiny_synth, tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(f'{{"pid": {_dead_pid()}, "host": "{socket.gethostname()}"}}')
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING):
        train(_run_cfg(tiny_synth, run))
    assert "no longer running" in caplog.text and "removed 1 temporary files" in caplog.text
    assert not list(run.glob(".*.tmp")) and not (run / LOCK_NAME).exists()
    assert (run / "last.pt").is_file()


def test_ablation_claim_and_trainer_lock_coexist(tmp_path):
    run = tmp_path / "grid_run"
    assert claim_run(run)  # the harness's claim first, as run_grid does
    with RunLock(run):  # then the trainer's lock, in the same process: no deadlock
        assert (run / ".claim").is_file() and (run / LOCK_NAME).is_file()
    (run / ".claim").unlink()


# --------------------------------------------------------------------------- 5. splits
@pytest.mark.parametrize("empty", ["query", "gallery", "train"])
def test_empty_split_is_found_before_the_first_step(tiny_synth, tmp_path, empty):
    splits = tuple(s for s in ("train", "query", "gallery") if s != empty)
    csv_path = _write_csv(tmp_path / "d.csv", _synth_rows(tiny_synth, splits))
    with pytest.raises(PganError, match=f"has no {empty} images"):
        train(_run_cfg(csv_path, tmp_path / "run", **{"data.dataset": "custom"}))
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "last.pt").exists()


def test_epoch_is_saved_before_its_evaluation(tiny_synth, tmp_path, monkeypatch):
    import pgan.engine.train as training  # train() calls evaluate_sets through this module's name

    real = training.evaluate_sets

    def broken(*args, **kwargs):
        raise PganError("evaluation failed")

    monkeypatch.setattr(training, "evaluate_sets", broken)
    cfg = _run_cfg(tiny_synth, tmp_path / "run", epochs=2)
    with pytest.raises(PganError, match="evaluation failed"):
        train(cfg)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    assert len(_losses(tmp_path / "run")) == 2
    monkeypatch.setattr(training, "evaluate_sets", real)
    result = train(cfg, resume=True)  # trains nothing, evaluates the finished run
    assert 0.0 <= result["metrics"]["mAP"] <= 1.0


def test_unreadable_split_message_with_the_image_cache(tiny_synth, tmp_path):
    rows = _synth_rows(tiny_synth, ("train", "gallery"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    csv_path = _write_csv(tmp_path / "d.csv", rows + [(bad, 99, 1, "query")])
    with pytest.raises(PganError, match=r"none of the 1 images of this split could be decoded.*bad.jpg"):
        train(_run_cfg(csv_path, tmp_path / "run", **{"data.dataset": "custom"}))


# --------------------------------------------------------------------------- 6-7. config and YAML
BAD_VALUES = [("optim.lr=nan", "optim.lr"), ("optim.weight_decay=-1e-4", "optim.weight_decay"),
              ("loss.margin=-0.3", "loss.margin"), ("data.flip_p=7", "data.flip_p"),
              ("data.erase_p=-1", "data.erase_p"), ("optim.betas=[0.9, 1.5]", "optim.betas"),
              ("loss.label_smoothing=1.5", "loss.label_smoothing"),
              ("model.part_upsample=0", "model.part_upsample"), ("model.part_upsample=16", "model.part_upsample"),
              ("loss.part_id_weight=-1", "loss.part_id_weight")]


@pytest.mark.parametrize("item,key", BAD_VALUES)
def test_config_values_out_of_range(item, key, run_cli, capsys, tmp_path):
    with pytest.raises(PganError, match=rf"^{key}="):
        validate_config(load_config(None, [item]))
    assert run_cli("train", item, f"run.out_dir={tmp_path}") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and key in err


def test_yaml_error_names_file_line_and_column(tmp_path, run_cli, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  variant: pgan\n  backbone: [resnet18\noptim:\n  lr: 1e-3\n")
    assert run_cli("train", "--config", bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{bad}:4:6: not valid YAML:" in err and "expected ',' or ']'" in err


# --------------------------------------------------------------------------- 8. the smaller ones
def test_duplicate_csv_rows(tiny_synth, tmp_path, caplog):
    rows = _synth_rows(tiny_synth)
    with caplog.at_level(logging.WARNING):
        ds = read_custom_csv(_write_csv(tmp_path / "d.csv", rows + rows[:3]))
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == len(rows)
    assert "3 duplicate rows" in caplog.text
    p, pid, cam, split = rows[0]
    with pytest.raises(PganError, match=r"d.csv:\d+: image .* listed again in split 'train' with other ids "
                                        r"\(line 2 gives"):
        read_custom_csv(_write_csv(tmp_path / "d.csv", rows + [(p, pid + 1, cam, split)]))


def test_relative_data_root_is_stored_resolved(trained, tiny_synth, tmp_path, monkeypatch, run_cli, capsys):
    monkeypatch.chdir(tiny_synth.parent)
    out = tmp_path / "rel"
    train(_run_cfg(Path(tiny_synth.name), out))
    stored = load_checkpoint(out / "last.pt")["config"]
    assert stored["data"]["root"] == str(tiny_synth.resolve())
    monkeypatch.chdir(tmp_path)  # another folder: eval still finds the data
    assert run_cli("eval", "--checkpoint", out / "last.pt") == 0
    capsys.readouterr()


def test_viz_ranks_takes_overrides(trained, tiny_synth, tmp_path, run_cli, capsys):
    ckpt = load_checkpoint(trained / "last.pt")
    ckpt["config"]["data"]["root"] = str(tmp_path / "moved_away")
    torch.save(ckpt, tmp_path / "moved.pt")
    assert run_cli("viz", "ranks", "--checkpoint", tmp_path / "moved.pt", "--out", tmp_path / "r1") == 2
    assert run_cli("viz", "ranks", "--checkpoint", tmp_path / "moved.pt", "--out", tmp_path / "r2",
                   "--queries", 2, f"data.root={tiny_synth}") == 0
    model, cfg = load_trained(tmp_path / "moved.pt")
    assert cfg.model.variant == "baseline"
    capsys.readouterr()


def test_missing_parts_hint_names_the_config_key(tmp_path):
    (tmp_path / "parts_gt.jsonl").write_text('{"image": "a.jpg", "width": 8, "height": 8, "boxes": []}\n')
    src = build_source("file", part_file=tmp_path / "parts_gt.jsonl")
    with pytest.raises(PganError, match="set data.missing_parts=empty to allow"):
        src.check_coverage(["b.jpg"])


# --------------------------------------------------------------------------- what must keep working
@pytest.mark.slow
def test_kill_9_mid_run_then_resume_continues_exactly(tiny_synth, tmp_path):
    """A SIGKILL leaves a stale lock (dead PID) and maybe a temporary file; --resume takes both over."""
    full, part = tmp_path / "full", tmp_path / "part"
    train(_run_cfg(tiny_synth, full, epochs=4))
    over = _overrides(tiny_synth, part, 40)
    args = [sys.executable, "-m", "pgan.cli", "train", *[f"{k}={v}" for k, v in over.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # bounded: until the first epoch's checkpoint exists
            if (part / "metrics.csv").is_file() or proc.poll() is not None:
                break
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, "the training process ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (part / LOCK_NAME).is_file()  # left behind by the killed process
    done = load_checkpoint(part / "last.pt")["epoch"]
    assert 1 <= done < 4
    train(_run_cfg(tiny_synth, part, epochs=4), resume=True)
    assert _losses(part) == pytest.approx(_losses(full), rel=1e-4)


def _overrides(root, out, epochs):
    """The settings of :func:`_run_cfg` as command-line overrides."""
    return {"data.root": root, "data.input_size": "[64,64]", "data.cache_images": "true", "data.p": 4,
            "data.k": 4, "data.workers": 1, "model.backbone": "resnet18", "model.pretrained": "false",
            "model.variant": "baseline", "model.reduced_dim": 32, "optim.lr": "1e-3", "optim.epochs": epochs,
            "optim.warmup_epochs": 0, "optim.milestones": "[100]", "run.out_dir": out, "run.progress": "false"}
