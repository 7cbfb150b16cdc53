"""Artifact metadata round trips, kinds, and where names point."""

from __future__ import annotations

from pathlib import Path

import pytest

from detops.deploy.artifact import (
    ArtifactMeta,
    artifact_kind,
    read_onnx_metadata,
    resolve_artifact,
    resolve_source,
)
from detops.errors import DetopsError
from detops.fileio import sha256_file

META = ArtifactMeta(
    variant="damo_yolo_tiny",
    family="damo_yolo",
    class_names=("cat", "dog"),
    category_ids=(3, 17),
    input_size=64,
    pixel_scale=255.0,
    source_sha256="ab" * 32,
    detops_version="0.1.0",
    batch=None,
    opset=17,
)


def test_metadata_props_round_trip_and_refusals():
    props = META.to_metadata_props()
    assert all(k.startswith("detops.") for k in props)
    assert ArtifactMeta.from_metadata_props({**props, "producer": "x"}, source="m.onnx") == META
    with pytest.raises(DetopsError, match="m.onnx: unknown artifact metadata field"):
        ArtifactMeta.from_metadata_props({**props, "detops.colour": '"red"'}, source="m.onnx")
    missing = {k: v for k, v in props.items() if k != "detops.category_ids"}
    with pytest.raises(DetopsError, match="lacks field 'category_ids'"):
        ArtifactMeta.from_metadata_props(missing, source="m.onnx")
    with pytest.raises(DetopsError, match="no detops metadata"):
        ArtifactMeta.from_metadata_props({"producer": "x"}, source="m.onnx")
    with pytest.raises(ValueError, match="class_names has 2 entries but category_ids 1"):
        ArtifactMeta(**{**META.to_dict(), "class_names": ("a", "b"), "category_ids": (1,)})


def test_artifact_kinds():
    assert artifact_kind("runs/best.pt") == "checkpoint"
    assert artifact_kind("w.PTH") == "checkpoint"
    assert artifact_kind("m.onnx") == "onnx"
    assert artifact_kind("m.engine") == "tensorrt" and artifact_kind("m.plan") == "tensorrt"
    with pytest.raises(DetopsError, match="m.tflite: unknown artifact kind '.tflite'"):
        artifact_kind("m.tflite")


def test_resolve_artifact_and_source(tmp_path: Path, tiny_artifacts):
    paths = tiny_artifacts["damo_yolo_tiny"]
    assert resolve_artifact(paths["run"]) == paths["checkpoint"]
    with pytest.raises(DetopsError, match="artifact not found: .*nothing.onnx"):
        resolve_artifact(tmp_path / "nothing.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetopsError, match="without best.pt"):
        resolve_artifact(tmp_path / "empty")
    assert resolve_source("rtdetrv2_s").kind == "variant"
    src = resolve_source(paths["run"])
    assert (src.variant, src.path, src.kind) == ("damo_yolo_tiny", paths["checkpoint"], "checkpoint")
    with pytest.raises(DetopsError, match="neither a file, a run directory nor a variant"):
        resolve_source("damo_yolo_q")
    with pytest.raises(DetopsError, match="export needs a checkpoint"):
        resolve_source(paths["onnx"])


def test_export_from_checkpoint_and_run_dir_carries_metadata(tiny_artifacts, synth_root, tmp_path):
    import json

    from detops.deploy.exporting import export_artifact

    cats = sorted(
        json.loads((synth_root / "annotations" / "instances_val.json").read_text())["categories"],
        key=lambda c: c["id"],
    )
    for variant, paths in tiny_artifacts.items():
        # The session fixture exported the run directory: default --out is beside its best.pt.
        assert paths["onnx"] == paths["checkpoint"].with_suffix(".onnx")
        meta = read_onnx_metadata(paths["onnx"])
        assert meta.variant == variant
        assert list(meta.class_names) == [c["name"] for c in cats]
        assert list(meta.category_ids) == [c["id"] for c in cats]
        assert meta.input_size == 64 and meta.batch is None and meta.opset == 17
        assert meta.source_sha256 == sha256_file(paths["checkpoint"])
        assert meta.pixel_scale == (255.0 if variant.startswith("damo") else 1.0)
    # From the checkpoint file itself, with a fixed batch: the graph's batch axis is a constant.
    import onnx

    report, meta = export_artifact(
        tiny_artifacts["damo_yolo_tiny"]["checkpoint"], out=tmp_path / "b2.onnx", batch=2
    )
    assert meta.batch == 2 and read_onnx_metadata(report.path) == meta
    dims = onnx.load(str(report.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 64, 64]


def test_mismatching_export_is_refused_and_nothing_written(tiny_artifacts, tmp_path, monkeypatch):
    import detops.export
    from detops.deploy.exporting import export_artifact

    real = detops.export.run_onnx

    def perturbed(path, inputs):
        outputs = real(path, inputs)
        return [o * 1.01 if o.dtype.kind == "f" else o for o in outputs]

    monkeypatch.setattr(detops.export, "run_onnx", perturbed)
    with pytest.raises(DetopsError, match="ONNX Runtime differs from PyTorch"):
        export_artifact(tiny_artifacts["damo_yolo_tiny"]["checkpoint"], out=tmp_path / "x" / "m.onnx")
    assert list((tmp_path / "x").iterdir()) == []


def test_export_cli_refuses_conflicting_options(tiny_artifacts, tmp_path, capsys):
    from detops.cli import main

    run = tiny_artifacts["damo_yolo_tiny"]["run"]
    for args, needle in [
        (["--batch", "2", "--dynamic-batch"], "either --batch N or --dynamic-batch"),
        (["--img-size", "50"], "--img-size 50"),
        (["--batch", "0"], "--batch must be >= 1"),
    ]:
        code = main(["export", str(run), "--out", str(tmp_path / "m.onnx"), *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.onnx").exists()
