"""Deployment: export detectors as ONNX files and ``torch.export`` programs, and run them.

>>> from msad.api.export import export
>>> from msad.export import ExportedDetector
>>> export("runs/s/last.safetensors", "student.onnx")          # doctest: +SKIP
>>> detector = ExportedDetector("student.onnx")                 # doctest: +SKIP
>>> detections = detector(image)                                # doctest: +SKIP
"""

from msad.export.decode import decode_detections
from msad.export.deploy import DeployModel, DeploySpec, ExportError, deploy_spec, split_outputs
from msad.export.runtime import RUNTIMES, ExportedDetector, open_backend

__all__ = [
    "decode_detections",
    "DeployModel",
    "DeploySpec",
    "ExportError",
    "deploy_spec",
    "split_outputs",
    "RUNTIMES",
    "ExportedDetector",
    "open_backend",
]
