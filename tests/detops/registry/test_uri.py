"""Registry URI parsing (pure); resolution against a real server is in test_register.py."""

from __future__ import annotations

import pytest

from detops.errors import DetopsError
from detops.registry.uri import ModelRef, parse_model_uri


def test_alias_and_version_forms() -> None:
    assert parse_model_uri("models:/detops-damo_yolo_t@champion") == ModelRef(
        "detops-damo_yolo_t", alias="champion"
    )
    assert parse_model_uri("models:/detops-rtdetrv2_s/12") == ModelRef("detops-rtdetrv2_s", version=12)


@pytest.mark.parametrize(
    "text",
    [
        "models:/detops-x",
        "models:/detops-x@",
        "models:/detops-x/",
        "models:/detops-x/1a",
        "models:detops-x@a",
        "models:/a b@c",
    ],
)
def test_bad_uris_are_one_line_errors(text: str) -> None:
    with pytest.raises(DetopsError) as info:
        parse_model_uri(text)
    assert repr(text) in str(info.value) and "\n" not in str(info.value)
