"""Shared fixtures: a tiny synthetic COCO dataset built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SYNTH_TRAIN, SYNTH_VAL, SYNTH_SIZE, SYNTH_SEED = 8, 4, 128, 0


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset (8 train / 4 val images around 128 px, seed 0) in our COCO layout.

    Session-scoped and shared: tests must not modify it (copy it with ``shutil.copytree`` first).
    """
    from detops.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize(root, train=SYNTH_TRAIN, val=SYNTH_VAL, size=SYNTH_SIZE, seed=SYNTH_SEED, progress=False)
    return root
