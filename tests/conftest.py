import pytest


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic benchmark (VeRi layout + ground-truth part file), generated once per session."""
    from pgan.synth import SynthConfig, generate_synth

    root = tmp_path_factory.mktemp("synth")
    generate_synth(root, SynthConfig(num_train_ids=8, num_test_ids=4, images_per_id=(6, 6), num_cameras=3,
                                     num_families=2, image_size=64, seed=3, workers=1), progress=False)
    return root


@pytest.fixture
def run_cli():
    """Call the ``pgan`` command in-process: ``run_cli("viz", "ranks", ...) -> exit status``."""
    from pgan.cli import main

    return lambda *argv: main([str(a) for a in argv])


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every test model is tiny: one thread is fastest, and immune to OpenMP spin-waits on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_synth, tmp_path_factory):
    """``tiny_checkpoint(variant, *overrides) -> last.pt`` of a 1-epoch ResNet-18 run on :func:`tiny_synth`
    (cached per variant and overrides)."""
    from pgan.config import load_config
    from pgan.engine.train import train

    made = {}

    def make(variant: str = "pgan", *overrides: str):
        key = (variant, *overrides)
        if key not in made:
            out = tmp_path_factory.mktemp(f"run-{variant}")
            train(load_config(None, [
                f"data.root={tiny_synth}", "data.input_size=[64, 64]", "data.cache_images=true", "data.p=4",
                "data.k=4", "data.workers=1", "model.backbone=resnet18", "model.pretrained=false",
                f"model.variant={variant}", "model.reduced_dim=32", "optim.epochs=1", "optim.warmup_epochs=0",
                f"run.out_dir={out}", "run.progress=false", "run.device=cpu", *overrides]))
            made[key] = out / "last.pt"
        return made[key]

    return make
