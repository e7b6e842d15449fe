"""Running an exported file: :class:`ExportedDetector` has the predictor interface of :class:`msad.api.Predictor`.

``.onnx`` files run in ONNX Runtime, ``.pt2`` archives in PyTorch; both give the raw head maps, which
:func:`~msad.export.decode.decode_detections` turns into detections.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from msad import file_formats
from msad.data import resized_shape
from msad.data.transforms import resize_image
from msad.export.decode import decode_detections
from msad.export.deploy import DeploySpec, ExportError, split_outputs
from msad.structures import Detections, LevelOutputs
from msad.tasks.evaluation_loop import to_original_frame

__all__ = ["RUNTIMES", "ExportedDetector", "open_backend"]

#: File suffix → runtime that runs it.
RUNTIMES = {".onnx": "onnx", ".pt2": "torch.export"}


def open_backend(path: str | Path, *, device: str = "cpu", threads: int | None = None, trust_pt2: bool = False):
    """The backend of an exported file, chosen by its content (ONNX or a ``.pt2`` archive), else by its suffix.

    A ``.pt2`` archive is loaded only with ``trust_pt2`` (loading one can run code it holds:
    :func:`msad.export.program.check_archive`); an ``.onnx`` file is data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such exported model: {path}")
    kind = file_formats.sniff(path)
    if kind in (file_formats.SAFETENSORS, file_formats.PICKLE):
        raise ExportError(
            f"{path}: this is {file_formats.describe(kind)}, not an exported model (a .onnx or .pt2 file from "
            "`msad export`); msad weights run with `--runtime torch`"
        )
    suffix = {file_formats.ONNX: ".onnx", file_formats.PT2: ".pt2"}.get(kind, path.suffix)
    if suffix == ".onnx":
        from msad.export.onnx import OnnxBackend

        if device not in ("auto", "cpu"):
            raise ExportError(f"{path}: the ONNX runtime here runs on the CPU only, not {device!r}")
        return OnnxBackend(path, threads=threads)
    if suffix == ".pt2":
        from msad.export.program import ProgramBackend

        return ProgramBackend(path, device="cpu" if device == "auto" else device, trust=trust_pt2)
    raise ExportError(f"{path}: not an exported model (expected a .onnx or .pt2 file from `msad export`)")


class ExportedDetector:
    """Detections for one uint8 RGB image in its own frame, from an exported ``.onnx`` or ``.pt2`` file.

    Args:
        path: the exported file.
        score_threshold: drop detections scoring below this.
        device: ``cpu`` (ONNX Runtime runs on the CPU), or a torch device for a ``.pt2`` program.
        threads: ONNX Runtime intra-op threads (``None``: its default).
        trust_pt2: load a ``.pt2`` archive although that can run code it holds (refused without it).
    """

    def __init__(
        self, path: str | Path, *, score_threshold: float = 0.3, device: str = "cpu", threads: int | None = None,
        trust_pt2: bool = False,
    ) -> None:
        self.path = Path(path)
        self.backend = open_backend(self.path, device=device, threads=threads, trust_pt2=trust_pt2)
        self.spec: DeploySpec = self.backend.spec
        self.score_threshold = score_threshold

    @property
    def role(self) -> str:
        """``baseline``, ``teacher`` or ``student``."""
        return self.spec.role

    @property
    def label_space(self) -> list[tuple[int, str]]:
        """``[(coco_id, name), …]`` in label order."""
        return self.spec.label_space

    def outputs(self, images: Tensor) -> dict[str, LevelOutputs]:
        """Raw head maps per head level of a float ``[B, 3, H, W]`` 0–255 RGB batch (sizes checked)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ExportError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        self.spec.check_size(int(images.shape[-2]), int(images.shape[-1]))
        return split_outputs(self.backend(images), self.spec.levels)

    def detect(self, images: Tensor, input_sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections per image of a padded 0–255 batch, in the batch's frame (not score-filtered)."""
        return decode_detections(self.outputs(images), self.spec, input_sizes)

    def prepare(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(padded float batch of one, (h, w) inside it)``: resized as the spec says and padded with the mean."""
        height, width = image.shape[-2:]
        size = (int(height), int(width))
        if self.spec.resize is not None:
            test_size, max_size, scale = self.spec.resize
            size = resized_shape(size[0], size[1], test_size, max_size, scale)
            image = resize_image(image, *size) if size != (height, width) else image
        d = self.spec.size_divisibility
        pad_h, pad_w = -size[0] % d, -size[1] % d
        x = image.float()[None].contiguous()  # read_image / resize_image may give channels-last strides
        if pad_h or pad_w:
            mean = torch.tensor(self.spec.pixel_mean).view(1, 3, 1, 1)
            x = F.pad(x - mean, (0, pad_w, 0, pad_h)) + mean
        return x, size

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Detections:
        """Detections of ``image`` (uint8 ``[3, H, W]``), boxes in its frame."""
        original = (int(image.shape[-2]), int(image.shape[-1]))
        batch, size = self.prepare(image)
        det = to_original_frame(self.detect(batch, [size])[0].to("cpu"), size, original)
        keep = det.scores >= self.score_threshold
        return Detections(det.boxes[keep], det.scores[keep], det.labels[keep])
