"""The registry's pyfunc detector, saved and loaded by MLflow on a tiny DAMO-YOLO artifact (no server):
its detections equal `detops predict`'s on the same files, bad entries fail only their row, base64 and
raw bytes are both accepted, and the params ``score`` and ``backend`` act. Serving it over HTTP from a
real registry is in test_serve.py (slow)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detops.cli import main
from tests.detops.deploy.conftest import make_checkpoint

VARIANT = "damo_yolo_tiny"


def build_model(variant: str, *, data_root: Path, base: Path) -> tuple[Path, Path]:
    """A tiny checkpoint of ``variant`` exported to ONNX and saved as the registry's pyfunc detector;
    returns (ONNX file, model directory)."""
    import mlflow.pyfunc

    from detops.deploy.exporting import export_artifact
    from detops.registry.pyfunc import model_kwargs

    ckpt = make_checkpoint(base / "run" / "best.pt", variant, data_root=data_root)
    report, _ = export_artifact(ckpt, out=base / "run" / "best.onnx")
    example = sorted((data_root / "val").iterdir())[0].read_bytes()
    mlflow.pyfunc.save_model(str(base / "model"), **model_kwargs(report.path, example_image=example))
    return report.path, base / "model"


@pytest.fixture(scope="module")
def built(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_model(VARIANT, data_root=synth_root, base=tmp_path_factory.mktemp("pyfunc"))


@pytest.fixture(scope="module")
def onnx_file(built: tuple[Path, Path]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def model_dir(built: tuple[Path, Path]) -> Path:
    return built[1]


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


def _val_files(synth_root: Path) -> list[Path]:
    return sorted((synth_root / "val").iterdir())


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def predict_cli(onnx: Path, files: list[Path], out: Path, *, score: float) -> dict[str, list[dict[str, Any]]]:
    """`detops predict` on ``files``: its annotations grouped by file name."""
    assert main(["predict", str(onnx), *map(str, files), "--out", str(out), "--score", str(score)]) == 0
    coco = json.loads((out / "detections.json").read_text())
    by_id: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        by_id[ann["image_id"]].append(ann)
    return {Path(im["file_name"]).name: by_id[im["id"]] for im in coco["images"]}


def assert_rows_match_predict(
    rows: list[dict[str, Any]], expected: list[list[dict[str, Any]]], names: dict[int, str]
) -> None:
    """Served rows against `detops predict`'s annotations of the same images (which it rounds: bbox to
    3 decimals as xywh, scores to 5), in the same order."""
    assert len(rows) == len(expected)
    for row, anns in zip(rows, expected, strict=True):
        assert row["error"] is None
        assert len(row["scores"]) == len(anns) > 0
        boxes = np.asarray(row["boxes"], dtype=np.float64).reshape(-1, 4)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        np.testing.assert_allclose(xywh, [a["bbox"] for a in anns], atol=2e-3)
        np.testing.assert_allclose(row["scores"], [a["score"] for a in anns], atol=1e-5)
        assert row["category_ids"] == [a["category_id"] for a in anns]
        assert row["labels"] == [names[a["category_id"]] for a in anns]


def _names(synth_root: Path) -> dict[int, str]:
    cats = json.loads((synth_root / "annotations" / "instances_val.json").read_text())["categories"]
    return {int(c["id"]): c["name"] for c in cats}


def test_detections_equal_detops_predict(
    loaded: Any, onnx_file: Path, synth_root: Path, tmp_path: Path
) -> None:
    files = _val_files(synth_root)
    expected = predict_cli(onnx_file, files, tmp_path / "pred", score=0.3)
    out = loaded.predict(pd.DataFrame({"image": [_b64(p) for p in files]}), params={"score": 0.3})
    assert list(out.columns) == ["boxes", "scores", "labels", "category_ids", "error"]
    assert_rows_match_predict(
        out.to_dict(orient="records"), [expected[p.name] for p in files], _names(synth_root)
    )
    # boxes are in the original image's pixels (the synthetic images are not the 64 px input size)
    assert max(max(b[2], b[3]) for b in out.iloc[0]["boxes"]) > 64


def test_rtdetrv2_detections_equal_detops_predict(synth_root: Path, tmp_path: Path) -> None:
    """The other family: a graph with its post-processing inside (original sizes fed to it)."""
    import mlflow.pyfunc

    onnx, model = build_model("rtdetrv2_tiny", data_root=synth_root, base=tmp_path)
    files = _val_files(synth_root)
    # random weights score far below 0.3 here: compare every detection the graph returns
    expected = predict_cli(onnx, files, tmp_path / "pred", score=0.0)
    frame = pd.DataFrame({"image": [_b64(p) for p in files]})
    out = mlflow.pyfunc.load_model(str(model)).predict(frame, params={"score": 0.0})
    assert_rows_match_predict(
        out.to_dict(orient="records"), [expected[p.name] for p in files], _names(synth_root)
    )


def test_raw_bytes_and_base64_give_the_same_rows(loaded: Any, synth_root: Path) -> None:
    files = _val_files(synth_root)[:2]
    as_text = loaded.predict(pd.DataFrame({"image": [_b64(p) for p in files]}))
    as_bytes = loaded.predict(pd.DataFrame({"image": [p.read_bytes() for p in files]}))
    data_url = loaded.predict(pd.DataFrame({"image": [f"data:image/png;base64,{_b64(files[0])}"]}))
    assert as_text.to_dict(orient="records") == as_bytes.to_dict(orient="records")
    assert data_url.to_dict(orient="records")[0] == as_text.to_dict(orient="records")[0]


def test_a_bad_entry_fails_only_its_row(loaded: Any, synth_root: Path, tmp_path: Path) -> None:
    good = _val_files(synth_root)[0]
    text_file = base64.b64encode(b"not an image at all").decode()
    truncated = good.read_bytes()[:40]
    batch = [_b64(good), "%%% not base64 %%%", text_file, truncated, None, _b64(good)]
    rows = loaded.predict(pd.DataFrame({"image": batch}, dtype=object)).to_dict(orient="records")
    assert len(rows) == len(batch)
    assert rows[0]["error"] is None and rows[0]["scores"] and rows[0] == rows[5]
    for i in (1, 2, 3, 4):
        assert rows[i]["error"].startswith(f"row {i}: "), rows[i]["error"]
        assert rows[i]["boxes"] == rows[i]["scores"] == rows[i]["labels"] == [], i
    assert "base64" in rows[1]["error"] and "cannot decode" in rows[2]["error"]
    assert "missing" in rows[4]["error"]
    # the whole answer is JSON without NaN (what the scoring server sends)
    json.dumps(rows, allow_nan=False)


def test_score_param_filters(loaded: Any, synth_root: Path) -> None:
    frame = pd.DataFrame({"image": [_b64(_val_files(synth_root)[0])]})
    low = loaded.predict(frame, params={"score": 0.0}).iloc[0]
    mid = loaded.predict(frame, params={"score": 0.5}).iloc[0]  # random weights score about 0.5
    high = loaded.predict(frame, params={"score": 0.9999}).iloc[0]
    keep = [i for i, s in enumerate(low["scores"]) if s >= 0.5]
    assert 0 < len(keep) < len(low["scores"])
    assert mid["scores"] == [low["scores"][i] for i in keep]
    assert mid["boxes"] == [low["boxes"][i] for i in keep] and mid["labels"] == [
        low["labels"][i] for i in keep
    ]
    assert high["scores"] == [] and high["error"] is None


def test_backend_param_runs_openvino(loaded: Any, synth_root: Path) -> None:
    frame = pd.DataFrame({"image": [_b64(p) for p in _val_files(synth_root)[:2]]})
    ort_rows = loaded.predict(frame, params={"score": 0.3}).to_dict(orient="records")
    ov_rows = loaded.predict(frame, params={"score": 0.3, "backend": "openvino"}).to_dict(orient="records")
    for a, b in zip(ort_rows, ov_rows, strict=True):
        # OpenVINO and ONNX Runtime agree closely; a score at the threshold may flip one box
        assert abs(len(a["scores"]) - len(b["scores"])) <= 1
        n = min(len(a["scores"]), len(b["scores"]), 10)
        np.testing.assert_allclose(a["scores"][:n], b["scores"][:n], atol=1e-3)


@pytest.mark.parametrize(
    ("params", "needle"), [({"score": 1.5}, "'score'"), ({"backend": "tensorrt"}, "'backend'")]
)
def test_bad_params_are_refused(loaded: Any, synth_root: Path, params: dict[str, Any], needle: str) -> None:
    from mlflow.exceptions import MlflowException

    frame = pd.DataFrame({"image": [_b64(_val_files(synth_root)[0])]})
    with pytest.raises(MlflowException, match=needle):
        loaded.predict(frame, params=params)


def test_model_files_signature_example_and_onnx(model_dir: Path, onnx_file: Path, synth_root: Path) -> None:
    """The ONNX file is among the model's files (what `models:/` resolution finds); the signature, the
    params' defaults, the class names and a real input example are logged."""
    import mlflow.models

    from detops.deploy.artifact import read_onnx_metadata

    (found,) = list(model_dir.rglob("*.onnx"))
    assert found.read_bytes() == onnx_file.read_bytes()
    info = mlflow.models.Model.load(str(model_dir))
    sig = info.signature
    assert sig is not None and sig.inputs.input_names() == ["image"]
    assert sig.outputs is not None and sig.outputs.input_names() == [
        "boxes",
        "scores",
        "labels",
        "category_ids",
        "error",
    ]
    assert {p.name: p.default for p in sig.params.params} == {"score": 0.3, "backend": "ort"}
    assert info.metadata["detops"]["class_names"] == list(read_onnx_metadata(onnx_file).class_names)
    example = json.loads((model_dir / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image"] and example["params"] == {"score": 0.3}
    assert (
        base64.b64decode(example["dataframe_split"]["data"][0][0]) == _val_files(synth_root)[0].read_bytes()
    )


def test_model_does_not_need_the_logged_file(onnx_file: Path, synth_root: Path, tmp_path: Path) -> None:
    """A saved model moved elsewhere still loads after the file it was made from is gone."""
    import mlflow.pyfunc

    from detops.registry.pyfunc import model_kwargs

    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir()
    shutil.copy(onnx_file, source)
    image = _val_files(synth_root)[0].read_bytes()
    mlflow.pyfunc.save_model(str(tmp_path / "saved"), **model_kwargs(source, example_image=image))
    shutil.rmtree(source.parent)
    shutil.move(tmp_path / "saved", tmp_path / "moved")
    out = mlflow.pyfunc.load_model(str(tmp_path / "moved")).predict(pd.DataFrame({"image": [image]}))
    assert out.iloc[0]["error"] is None and out.iloc[0]["scores"]
