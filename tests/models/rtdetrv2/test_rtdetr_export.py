"""Post-processing and ONNX export (post-processing inside the graph, dynamic batch) parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import rtdetrv2


def test_postprocessor_topk_and_original_pixels() -> None:
    logits = torch.full((2, 3, 4), -10.0)
    logits[0, 1, 2] = 3.0  # best: query 1, class 2
    logits[0, 2, 0] = 1.0
    logits[1, 0, 3] = 2.0
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(2, 3, 1)
    boxes[0, 1] = torch.tensor([0.25, 0.5, 0.5, 0.2])
    post = rtdetrv2.build_postprocessor(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=4)
    out = post(
        {"pred_logits": logits, "pred_boxes": boxes},
        image_size=(128, 128),
        orig_sizes=torch.tensor([[480, 640], [100, 200]]),  # (height, width)
    )
    assert len(out) == 2 and out[0]["boxes"].shape == (12, 4)  # K = min(300, Q * C)
    assert out[0]["labels"][:2].tolist() == [2, 0] and out[0]["labels"].dtype == torch.int64
    torch.testing.assert_close(out[0]["scores"][0], torch.sigmoid(torch.tensor(3.0)))
    assert (out[0]["scores"][:-1] >= out[0]["scores"][1:]).all()
    # cx .25 w .5 -> x 0..0.5 of width 640; cy .5 h .2 -> y .4...6 of height 480.
    torch.testing.assert_close(out[0]["boxes"][0], torch.tensor([0.0, 192.0, 320.0, 288.0]))
    torch.testing.assert_close(out[1]["boxes"][0], torch.tensor([80.0, 30.0, 120.0, 70.0]))
    assert out[1]["labels"][0] == 3


def _compare(ort_out: list[np.ndarray], torch_out: tuple[torch.Tensor, ...]) -> None:
    labels, boxes, scores = (t.numpy() for t in torch_out)
    assert ort_out[0].dtype == np.int64 and ort_out[0].shape == labels.shape
    assert ort_out[1].shape == boxes.shape and ort_out[2].shape == scores.shape
    rel = np.abs(ort_out[2] - scores).max() / np.abs(scores).max()
    assert rel < 1e-4, rel
    # Random-init scores are close together and near-ties may swap neighbouring ranks, so every ONNX
    # detection must match a PyTorch detection (same label, box within 1e-2 px) a few ranks away.
    window = 3
    for b in range(labels.shape[0]):
        for i in range(labels.shape[1]):
            lo, hi = max(0, i - window), i + window + 1
            ok = (labels[b, lo:hi] == ort_out[0][b, i]) & np.all(
                np.abs(boxes[b, lo:hi] - ort_out[1][b, i]) <= 1e-2 + 1e-4 * np.abs(boxes[b, lo:hi]), axis=-1
            )
            assert ok.any(), (b, i, ort_out[0][b, i], ort_out[1][b, i])


def _export_and_check(name: str, image_size: int, tmp_path: Path, batches: tuple[int, ...]) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = rtdetrv2.build_model(rtdetrv2.VARIANTS[name], num_classes=80).deploy()
    wrapper = rtdetrv2.export_wrapper(model)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        wrapper,
        wrapper.example_inputs(1, image_size),
        str(path),
        input_names=wrapper.input_names,
        output_names=wrapper.output_names,
        dynamic_axes=wrapper.dynamic_axes,
        opset_version=17,
        dynamo=False,
    )
    assert not model.training and not wrapper.training  # export restores eval, not train
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images", "orig_target_sizes"]
    assert [o.name for o in session.get_outputs()] == ["labels", "boxes", "scores"]
    for batch in batches:
        images = torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(batch))
        sizes = torch.tensor([[640, 480], [333, 500], [1280, 720]][:batch], dtype=torch.int64)  # (w, h)
        got = session.run(None, {"images": images.numpy(), "orig_target_sizes": sizes.numpy()})
        with torch.no_grad():
            ref = wrapper(images, sizes)
        _compare(got, ref)
        # Box centres lie inside the image: x scaled by the width (first column), y by the height.
        centres = (got[1][..., :2] + got[1][..., 2:]) / 2
        assert (centres <= sizes.numpy()[:, None, :] + 1e-3).all() and (centres >= -1e-3).all()


def test_onnx_parity_tiny_batch_1_and_2(tmp_path: Path) -> None:
    _export_and_check("rtdetrv2_tiny", 128, tmp_path, (1, 2))


@pytest.mark.slow
def test_onnx_parity_s_batch_1_and_2(tmp_path: Path) -> None:
    _export_and_check("rtdetrv2_s", 640, tmp_path, (1, 2))


def test_export_wrapper_refuses_training_model() -> None:
    model = rtdetrv2.build_model(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=80)
    with pytest.raises(ValueError, match="eval"):
        rtdetrv2.export_wrapper(model)
    wrapper = rtdetrv2.export_wrapper(model.deploy())
    images, sizes = wrapper.example_inputs(3, 128)
    assert images.shape == (3, 3, 128, 128) and sizes.dtype == torch.int64 and sizes.shape == (3, 2)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
