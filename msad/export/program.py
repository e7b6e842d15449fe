"""``torch.export`` programs (``.pt2``) of a :class:`~msad.export.deploy.DeployModel`, and their backend.

The program has a dynamic batch and a dynamic height and width, each a multiple of the spec's
``size_divisibility``; the :class:`DeploySpec` travels inside the archive as ``extra_files["msad.json"]``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim, ExportedProgram

from msad.export.deploy import DeployModel, DeploySpec, ExportError

__all__ = ["SPEC_FILE", "example_input", "dynamic_shapes", "trace", "save_program", "ProgramBackend"]

#: Name of the spec inside a ``.pt2`` archive.
SPEC_FILE = "msad.json"


def example_input(spec: DeploySpec) -> Tensor:
    """A two-image example batch (used to trace the graph; any allowed size is taken afterwards)."""
    d = spec.size_divisibility
    rows = max(3, -(-spec.coarsest_stride // d) + 1)
    return torch.full((2, 3, rows * d, (rows + 2) * d), 114.0)


def dynamic_shapes(spec: DeploySpec) -> dict[str, dict[int, object]]:
    """Dynamic batch, height and width (multiples of ``spec.size_divisibility``) of the ``images`` input."""
    d = spec.size_divisibility
    top = spec.max_side // d
    return {
        "images": {
            0: Dim("batch", min=1, max=256),
            2: d * Dim("height_blocks", min=1, max=top),
            3: d * Dim("width_blocks", min=1, max=top),
        }
    }


def trace(model: DeployModel, spec: DeploySpec) -> ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) with the dynamic shapes of :func:`dynamic_shapes`.

    Traced size-obliviously: without it the tracer would assume that no pyramid map has a side of one cell
    and refuse, e.g., a 64×96 input whose stride-64 map is 1×2.
    """
    with torch.no_grad(), _size_oblivious():
        return torch.export.export(model.eval(), (example_input(spec),), dynamic_shapes=dynamic_shapes(spec))


def _size_oblivious():
    """torch's ``backed_size_oblivious`` tracing mode (a no-op where this torch lacks it)."""
    try:
        from torch.fx.experimental import _config

        return _config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError, KeyError):
        return contextlib.nullcontext()


def save_program(program: ExportedProgram, spec: DeploySpec, path: str | Path) -> Path:
    """Write ``program`` as a ``.pt2`` archive at ``path`` with ``spec`` inside; returns the path."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ExportError(f"{path}: a torch.export archive must end in .pt2")
    tmp = path.with_name(f".{path.stem}.tmp.pt2")
    torch.export.save(program, str(tmp), extra_files={SPEC_FILE: spec.to_json()})
    tmp.replace(path)
    return path


class ProgramBackend:
    """A ``.pt2`` archive from :func:`export_program`, run in PyTorch.

    Args:
        path: the ``.pt2`` file.
        device: where to run it.
    """

    def __init__(self, path: str | Path, *, device: torch.device | str = "cpu") -> None:
        extra = {SPEC_FILE: ""}
        try:
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as err:  # noqa: BLE001 - torch raises several types for a bad archive
            raise ExportError(f"{path}: not a loadable torch.export archive ({' '.join(str(err).split())[:200]})") from None
        if not extra[SPEC_FILE]:
            raise ExportError(f"{path}: a torch.export archive without msad metadata; export it with `msad export`")
        self.spec = DeploySpec.from_json(extra[SPEC_FILE])
        self.device = torch.device(device)
        self.module = program.module().to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> list[Tensor]:
        """The program's flat outputs for a float ``[B, 3, H, W]`` batch."""
        return list(self.module(images.to(self.device, torch.float32)))
