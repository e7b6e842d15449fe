"""Exported files whose msad metadata does not fit their graph, and files given to the wrong reader (issue 23)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from msad.export import ExportError
from msad.export.deploy import DeploySpec
from msad.levels import HEAD_LEVELS, level_stride

onnx = pytest.importorskip("onnx", reason="the msad[export] extra is not installed")
pytest.importorskip("onnxruntime", reason="the msad[export] extra is not installed")

NUM_CLASSES = 4


def _spec(**changes) -> DeploySpec:
    spec = DeploySpec(
        role="baseline", input_frame="hr", input_factor=1, box_scale=1.0, size_divisibility=32, levels=HEAD_LEVELS,
        strides={lvl: level_stride(lvl) for lvl in HEAD_LEVELS}, classes=[f"c{i}" for i in range(NUM_CLASSES)],
        category_ids=list(range(1, NUM_CLASSES + 1)), pixel_mean=(1.0, 2.0, 3.0), pixel_std=(1.0, 1.0, 1.0),
        postprocess={"score_threshold": 0.05, "pre_nms_topk": 1000, "nms_threshold": 0.6, "max_detections": 100,
                     "clip_before_nms": False},
        resize=(128, 160, 1.0), width=0.25,
    )
    return replace(spec, **changes)


def _onnx_file(path: Path, metadata: str, *, outputs: int = 15) -> Path:
    """A loadable ONNX graph of ``outputs`` identities of a ``[1, NUM_CLASSES, 2, 2]`` input, with ``metadata``."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, NUM_CLASSES, 2, 2])
    outs = [helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, [1, NUM_CLASSES, 2, 2]) for i in range(outputs)]
    nodes = [helper.make_node("Identity", ["images"], [f"o{i}"]) for i in range(outputs)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = "msad", metadata
    onnx.save(model, str(path))
    return path


def test_a_sound_spec_round_trips() -> None:
    spec = _spec()
    assert DeploySpec.from_json(spec.to_json(), source="m.onnx") == spec


@pytest.mark.parametrize(("changes", "words"), [
    ({"size_divisibility": 0}, "size_divisibility must be a positive integer, got 0"),
    ({"role": "critic"}, "role must be one of baseline, teacher, student"),
    ({"category_ids": [1]}, "classes and category_ids must be two lists of the same"),
    ({"levels": ("p9",)}, "levels must be head levels"),
    ({"pixel_std": (1.0, 0.0, 1.0)}, "the std positive"),
    ({"input_factor": 2}, "a baseline's graph takes its own image"),
])
def test_metadata_no_graph_could_have_is_one_line_naming_the_file(tmp_path: Path, changes, words) -> None:
    path = _onnx_file(tmp_path / "bad.onnx", _spec(**changes).to_json())
    from msad.export.runtime import ExportedDetector

    with pytest.raises(ExportError) as info:
        ExportedDetector(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid msad metadata") and words in message and "\n" not in message


def test_not_even_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"bad.onnx: invalid msad metadata"):
        DeploySpec.from_json(json.dumps({"role": "baseline"}), source=tmp_path / "bad.onnx")


def test_a_class_count_that_does_not_fit_the_graph_is_refused(tmp_path: Path) -> None:
    from msad.export.runtime import ExportedDetector

    fewer = _onnx_file(tmp_path / "three.onnx", _spec(classes=["a", "b", "c"], category_ids=[1, 2, 3]).to_json())
    with pytest.raises(ExportError, match=r"three.onnx: its msad metadata names 3 classes but the graph predicts 4"):
        ExportedDetector(fewer)
    short = _onnx_file(tmp_path / "short.onnx", _spec().to_json(), outputs=6)
    with pytest.raises(ExportError, match=r"short.onnx: its msad metadata names 5 head levels \(15 outputs\) but the graph has 6"):
        ExportedDetector(short)
    assert ExportedDetector(_onnx_file(tmp_path / "fine.onnx", _spec().to_json())).spec.classes == ["c0", "c1", "c2", "c3"]


def test_an_onnx_file_given_as_weights_is_called_an_onnx_file(tmp_path: Path) -> None:
    from msad.checkpoint import read_checkpoint
    from msad.errors import CheckpointError

    path = _onnx_file(tmp_path / "model.onnx", _spec().to_json())
    with pytest.raises(CheckpointError, match=r"model.onnx: this is an ONNX file .*take the .safetensors weights"):
        read_checkpoint(path)


class _Maps(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x * (i + 1) for i in range(15))


def test_a_pt2_class_count_that_does_not_fit_the_graph_is_refused(tmp_path: Path) -> None:
    from msad.export.program import SPEC_FILE, ProgramBackend

    program = torch.export.export(_Maps(), (torch.ones(1, NUM_CLASSES, 2, 2),))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path), extra_files={SPEC_FILE: _spec(classes=["a"], category_ids=[1]).to_json()})
    with pytest.raises(ExportError, match=r"m.pt2: its msad metadata names 1 classes but the graph predicts 4"):
        ProgramBackend(path, trust=True)


def test_exported_files_are_opened_by_their_content(tmp_path: Path) -> None:
    from msad.export.runtime import ExportedDetector
    from msad.serialization import save_weights

    weights = save_weights(tmp_path / "weights.onnx", {"a": torch.ones(2)}, {"role": "baseline"})
    with pytest.raises(ExportError, match=r"weights.onnx: this is a safetensors file, not an exported model .*--runtime torch"):
        ExportedDetector(weights)
    misnamed = _onnx_file(tmp_path / "model.pt2", _spec().to_json())
    assert ExportedDetector(misnamed).spec == _spec()
