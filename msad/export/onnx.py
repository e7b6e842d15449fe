"""ONNX export of a :class:`~msad.export.deploy.DeployModel` and its ONNX Runtime backend.

Needs the optional extra ``msad[export]`` (``onnx``, ``onnxscript``, ``onnxruntime``). The ONNX graph is
translated from the same ``torch.export`` program as the ``.pt2`` file (one trace for both), so it keeps its
dynamic batch, height and width; the :class:`DeploySpec` is stored as JSON under the metadata key ``msad``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.export import ExportedProgram

from msad.export.deploy import DeploySpec, ExportError, output_names
from msad.serialization import atomic_write

__all__ = ["METADATA_KEY", "export_onnx", "OnnxBackend", "require_onnx"]

#: Metadata key of the JSON spec in an exported file.
METADATA_KEY = "msad"


def require_onnx() -> None:
    """Raise a one-line :class:`ExportError` unless the ``export`` extra is installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"ONNX needs the optional extra: pip install 'msad[export]' ({err.name} is not installed)"
        ) from None


def export_onnx(program: ExportedProgram, spec: DeploySpec, path: str | Path, *, opset: int = 18) -> Path:
    """Write an exported ``program`` (:func:`~msad.export.program.trace`) as an ONNX file with ``spec`` in its
    metadata; returns the path. The dynamic sizes of the program carry over."""
    require_onnx()
    import onnx

    path = Path(path)
    with torch.no_grad():
        onnx_program = torch.onnx.export(
            program, dynamo=True, input_names=["images"], output_names=output_names(spec.levels),
            opset_version=opset, optimize=True, verbose=False,
        )
    proto = onnx_program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    return atomic_write(path, lambda tmp: onnx.save(proto, str(tmp), format="protobuf"))  # no temporary left on failure


class OnnxBackend:
    """An exported ONNX file run by ONNX Runtime on the CPU.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (``None``: ONNX Runtime's default).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise ExportError(f"{path}: not a loadable ONNX file ({' '.join(str(err).split())[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ExportError(f"{path}: an ONNX file without msad metadata; export it with `msad export`")
        self.spec = DeploySpec.from_json(meta[METADATA_KEY], source=path)
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        channels = outputs[0].shape[1] if outputs and len(outputs[0].shape) == 4 else None
        self.spec.check_graph(path, num_outputs=len(outputs), num_classes=channels if isinstance(channels, int) else None)

    def __call__(self, images: Tensor) -> list[Tensor]:
        """The graph's flat outputs for a float ``[B, 3, H, W]`` batch, as CPU tensors."""
        feed = {"images": np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())}
        return [torch.from_numpy(out) for out in self.session.run(self.output_names, feed)]
