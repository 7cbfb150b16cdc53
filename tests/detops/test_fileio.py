import json

import pytest

from detops.fileio import atomic_open, atomic_path, write_json


def test_write_json_round_trip(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json(target, {"a": 1, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 1, "b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as fh:
        fh.write(b"partial new content")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_failed_first_write_creates_nothing(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("verification failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_copy_survives_a_later_replace_of_its_source(tmp_path, monkeypatch):
    from detops.fileio import atomic_copy, atomic_open

    src, dst = tmp_path / "last.pt", tmp_path / "best.pt"
    with atomic_open(src) as fh:
        fh.write("epoch 1")
    atomic_copy(src, dst)
    with atomic_open(src) as fh:  # the next epoch's checkpoint
        fh.write("epoch 2")
    assert dst.read_text() == "epoch 1" and src.read_text() == "epoch 2"
    # where hard links are refused, a byte copy
    import os

    def no_links(*_args, **_kwargs):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_links)
    atomic_copy(src, dst)
    assert dst.read_text() == "epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
