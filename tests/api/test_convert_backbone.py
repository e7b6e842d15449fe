"""``msad convert slimmable`` through the API: a file in the wrong layout is a checkpoint error; nothing is written."""

from __future__ import annotations

import pytest
import torch

from msad.api import convert_slimmable
from msad.errors import CheckpointError


def test_a_checkpoint_in_another_layout_is_refused_naming_it(tmp_path) -> None:
    source = tmp_path / "other.pt"
    torch.save({"model": {"module.features.0.0.weight": torch.zeros(64, 3, 7, 7)}}, source)
    output = tmp_path / "backbone.safetensors"
    with pytest.raises(CheckpointError, match=r"other\.pt: not a slimmable ResNet-50 checkpoint .*missing"):
        convert_slimmable(source, output)
    assert not output.exists()
