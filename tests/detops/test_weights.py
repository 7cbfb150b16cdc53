"""`detops weights import` end to end: official layout in, strict mapping, clean errors out."""

import pickle
from pathlib import Path

import pytest
import torch

import models
from detops.cli import main
from detops.weights import load_weights
from tests.officials import official_state_dict


@pytest.fixture(scope="module")
def damo_t_release(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("release") / "damoyolo_tinynasL20_T.pth"
    torch.save({"model": official_state_dict("damo_yolo_t")}, path)
    return path


def test_import_cli_reports_zero_mismatches_and_writes_loadable_weights(damo_t_release, tmp_path, capsys):
    dst = tmp_path / "t.pt"
    assert main(["weights", "import", "damo_yolo_t", str(damo_t_release), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "0 missing, 0 unexpected" in out
    payload = load_weights(dst, variant="damo_yolo_t")
    model = models.build_model("damo_yolo_t")
    model.load_state_dict(payload["model"], strict=True)
    source = torch.load(damo_t_release, weights_only=True)["model"]
    for key, value in source.items():
        assert torch.equal(payload["model"][key], value), key
    # the release's own 80 classes, under COCO's category ids (12, 26, ... unused)
    assert payload["category_ids"][:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert payload["category_ids"][-1] == 90 and payload["class_names"][0] == "person"


def test_import_with_other_class_count_reinitialises_only_class_heads(damo_t_release, tmp_path, capsys):
    dst = tmp_path / "t3.pt"
    assert (
        main(["weights", "import", "damo_yolo_t", str(damo_t_release), str(dst), "--num-classes", "3"]) == 0
    )
    payload = load_weights(dst)
    assert payload["num_classes"] == 3
    assert payload["reinitialised"], "class heads must be reported as re-initialised"
    assert all("cls" in k for k in payload["reinitialised"])
    assert "re-initialised for 3 classes" in capsys.readouterr().out
    assert "category_ids" not in payload  # not COCO's classes any more: the training data names them


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "checkpoint file not found"),
        (b"this is not a checkpoint", "not a readable PyTorch checkpoint"),
    ],
)
def test_unreadable_sources_give_one_line_errors(tmp_path, capsys, content, message):
    src = tmp_path / "bad.pth"
    if content is not None:
        src.write_bytes(content)
    dst = tmp_path / "out.pt"
    assert main(["weights", "import", "damo_yolo_t", str(src), str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(src) in err
    assert len(err.splitlines()) == 1
    assert not dst.exists()


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    src = tmp_path / "evil.pth"
    with open(src, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    assert main(["weights", "import", "damo_yolo_t", str(src), str(tmp_path / "o.pt")]) == 2
    captured = capsys.readouterr()
    assert "code ran" not in captured.out
    assert "not a readable PyTorch checkpoint" in captured.err


def test_checkpoint_of_another_variant_lists_mismatches_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "s.pth"
    torch.save({"model": official_state_dict("damo_yolo_s")}, src)
    dst = tmp_path / "out.pt"
    assert main(["weights", "import", "damo_yolo_t", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "damo_yolo_t" in err and str(src) in err
    assert "backbone." in err  # the offending keys are named
    assert not dst.exists()


def test_unknown_variant_names_the_valid_ones(damo_t_release, tmp_path, capsys):
    assert main(["weights", "import", "yolo_v99", str(damo_t_release), str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert "yolo_v99" in err and "damo_yolo_t" in err
