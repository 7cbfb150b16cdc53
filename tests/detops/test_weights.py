"""`detops weights import` end to end: official layout in, strict mapping, clean errors out."""

import json
import pickle
from pathlib import Path

import pytest
import torch

import models
from detops.cli import main
from detops.weights import load_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"


def official_state_dict(variant: str, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the names, shapes and dtypes of the official release file."""
    spec = json.loads((FIXTURES / f"{variant}.json").read_text())
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, info in spec["tensors"].items():
        dtype = getattr(torch, info["dtype"])
        shape = info["shape"]
        if dtype == torch.bool:
            out[name] = torch.rand(shape, generator=gen) > 0.1
        elif dtype.is_floating_point:
            value = torch.rand(shape, generator=gen) * 0.2 - 0.1
            if name.endswith("running_var"):
                value = value.abs() + 0.5
            out[name] = value
        else:
            out[name] = torch.randint(0, 100, shape, generator=gen, dtype=dtype)
    return out


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
