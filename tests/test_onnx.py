"""ONNX export: onnxruntime equals PyTorch to 1e-4 at any batch size; foreign files are refused."""

import numpy as np
import pytest

from pgan.errors import PganError
from pgan.inference import FeatureExtractor, OnnxNetwork, export_onnx

FINER = ("model.part_upsample=2", "loss.part_id_weight=0.5")  # the part head on a 2x finer map


@pytest.mark.parametrize("variant,overrides,dim", [("pgan", (), 64), ("baseline", (), 64),
                                                   ("baseline", ("model.baseline_reduce=false",), 512),
                                                   ("nopam", FINER, 64)])
def test_onnx_runtime_matches_pytorch(tiny_checkpoint, tiny_synth, tmp_path, variant, overrides, dim):
    ckpt = tiny_checkpoint(variant, *overrides)
    onnx_file = export_onnx(ckpt, tmp_path / "m.onnx")
    net = OnnxNetwork(onnx_file, threads=1)
    assert net.input_names == (["images", "masks"] if variant != "baseline" else ["images"])
    assert net.embedding_dim == dim  # the baseline reduced to 2C' = 64 (reduced_dim 32), or ResNet-18's C
    paths = sorted((tiny_synth / "image_test").iterdir())
    torch_fx = FeatureExtractor(ckpt, device="cpu", batch_size=7)
    onnx_fx = FeatureExtractor(onnx_file, runtime="onnx", device="cpu", batch_size=7)  # batches of 7 and 2
    assert onnx_fx.model_fingerprint == torch_fx.model_fingerprint
    assert onnx_fx.embedding_dim == torch_fx.embedding_dim
    x, m, _ = torch_fx.prepare(paths[:3])
    raw_t = torch_fx._torch_forward(x, m)
    np.testing.assert_allclose(net.run(x, m), raw_t, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(onnx_fx(paths), torch_fx(paths), atol=1e-4)


def test_old_unreduced_baseline_checkpoint_loads_and_exports(tiny_checkpoint, tmp_path):
    """A baseline checkpoint from before model.baseline_reduce (its config lacks the key, its weights have no
    reduction layer) loads, evaluates, resumes and exports as trained: unreduced."""
    import torch

    from pgan.config import restore_config
    from pgan.engine.checkpoint import save_checkpoint
    from pgan.engine.run_folder import config_differences
    from pgan.models.trained import load_checkpoint, load_trained

    ckpt = load_checkpoint(tiny_checkpoint("baseline", "model.baseline_reduce=false"))
    del ckpt["config"]["model"]["baseline_reduce"]
    assert not any(k.startswith("reduce.") for k in ckpt["model"])
    save_checkpoint(tmp_path / "old.pt", **ckpt)
    model, cfg = load_trained(tmp_path / "old.pt")
    assert cfg.model.baseline_reduce is False and model.reduce is None and model.embedding_dim == 512
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    # --resume compares a key the old config lacks with the value it was trained with (False).
    resumed = restore_config(ckpt["config"], "old.pt")
    assert resumed.model.baseline_reduce is False and config_differences(ckpt["config"], resumed) == []
    resumed.model.baseline_reduce = True
    assert config_differences(ckpt["config"], resumed) == ["model.baseline_reduce=False (now True)"]
    net = OnnxNetwork(export_onnx(tmp_path / "old.pt", tmp_path / "old.onnx"), threads=1)
    assert net.embedding_dim == 512


def test_foreign_onnx_file_is_refused(tmp_path, tiny_checkpoint):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(PganError, match="not a pgan export"):
        FeatureExtractor(tmp_path / "other.onnx", runtime="onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(PganError, match="cannot load ONNX model"):
        OnnxNetwork(tmp_path / "junk.onnx")
    with pytest.raises(PganError, match="does not exist"):
        OnnxNetwork(tmp_path / "none.onnx")
    net = OnnxNetwork(export_onnx(tiny_checkpoint("pgan"), tmp_path / "m.onnx"))
    with pytest.raises(PganError, match="exported from another model"):
        net.check_matches("0000000000000000")
    with pytest.raises(PganError, match="exported from another model"):
        FeatureExtractor(tiny_checkpoint("baseline"), runtime="onnx", onnx_path=tmp_path / "m.onnx")


@pytest.mark.slow
def test_int8_quantisation_keeps_the_ranking(tiny_checkpoint, tiny_synth, tmp_path):
    from pgan.inference import quantize_int8

    ckpt = tiny_checkpoint("pgan")
    fp32 = export_onnx(ckpt, tmp_path / "m.onnx")
    calib = sorted((tiny_synth / "image_train").iterdir())[:24]
    q = quantize_int8(fp32, tmp_path / "m8.onnx", calib)
    fx8 = FeatureExtractor(q, runtime="onnx", device="cpu")
    assert fx8.model_fingerprint.endswith("-int8")
    paths = sorted((tiny_synth / "image_test").iterdir())
    a, b = FeatureExtractor(ckpt, device="cpu")(paths), fx8(paths)
    # int8 embeddings stay close to fp32 ones (cosine), and the nearest neighbours mostly agree.
    assert float(np.min(np.sum(a * b, axis=1))) > 0.95
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -1)
    np.fill_diagonal(sb, -1)
    assert np.mean(sa.argmax(1) == sb.argmax(1)) >= 0.75
