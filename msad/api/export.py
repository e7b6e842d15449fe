"""``msad export``: a weights file as an ONNX file and/or a ``torch.export`` program, checked against eager."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from msad.api.run_errors import user_situations
from msad.checkpoint import load_model, read_checkpoint
from msad.errors import UsageError
from msad.export.deploy import DeployModel, DeploySpec, ExportError, deploy_spec
from msad.export.program import save_program, trace
from msad.export.runtime import open_backend
from msad.models.fold import fold_batchnorm, has_batchnorm
from msad.outputs import check_outputs
from msad.roles import get_role

__all__ = ["ExportResult", "export", "export_targets"]


@dataclass
class ExportResult:
    """What :func:`export` wrote.

    Attributes:
        files: the exported files (``.onnx`` and/or ``.pt2``).
        spec: their shared contract (also inside each file).
        max_abs_diff: per file, the largest difference of its head maps from the eager model's on a check batch.
    """

    files: list[Path]
    spec: DeploySpec
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export_targets(out: str | Path) -> list[Path]:
    """The files ``out`` names: itself when it ends in ``.onnx`` or ``.pt2``, else ``model.onnx`` and ``model.pt2`` in it."""
    out = Path(out)
    if out.suffix in (".onnx", ".pt2"):
        return [out]
    if out.suffix:
        raise ExportError(f"{out}: give a .onnx or .pt2 file, or a directory for both")
    return [out / "model.onnx", out / "model.pt2"]


def export(
    weights: str | Path, out: str | Path, *, input_frame: str | None = None, branch: str | None = None,
    fold_bn: bool = True, check: bool = True,
) -> ExportResult:
    """Export baseline, teacher (one branch) or student weights for deployment.

    The graph takes float 0–255 RGB ``[B, 3, H, W]`` (H, W multiples of the spec's ``size_divisibility``),
    normalises it (and for a student with ``input_frame="hr"`` takes the nearest ×1/k copy) and returns the
    raw head maps; :func:`msad.export.decode.decode_detections` decodes them.

    The weights, the targets (a file standing where a folder of ``out`` should be…) and the options are checked
    before the model is traced; a full disk while writing is a :class:`~msad.errors.ResourceError`.

    Args:
        weights: a detector weights file.
        out: ``*.onnx``, ``*.pt2``, or a directory (both, as ``model.onnx`` and ``model.pt2``).
        input_frame: students only: ``lr`` (the default: the image is its LR input, as ``msad predict`` takes it)
            or ``hr``. A baseline's or teacher's graph always takes the image it was trained on: refused for them.
        branch: teachers only: the branch the graph runs (``hr``, ``lr`` or ``fused``); default the recipe's
            ``teacher.eval_branch``, the branch ``msad eval`` reports.
        fold_bn: fold batch norm into the convolutions (the active width's BN of a slimmable backbone).
        check: run a check batch through every written file and record its largest difference from eager.

    Raises:
        UsageError: ``input_frame`` given for a baseline or teacher, ``branch`` for a baseline or student, or an
            output path that cannot be written.
    """
    targets = export_targets(out)
    folder = None if Path(out).suffix in (".onnx", ".pt2") else out
    check_outputs([("OUT", t) for t in targets], inputs=[("WEIGHTS", weights)], within=folder)
    ckpt = read_checkpoint(weights)
    role = get_role(ckpt.role)
    if input_frame is not None and len(role.frames) == 1:
        raise UsageError(
            f"--input {input_frame} applies to student weights only; {weights} holds a {ckpt.role}, whose graph "
            "always takes the image it was trained on: leave --input out"
        )
    if branch is not None and not role.branches:
        raise UsageError(f"--branch {branch} applies to teacher weights only; {weights} holds a {ckpt.role}: leave --branch out")
    if any(t.suffix == ".onnx" for t in targets):
        from msad.export.onnx import require_onnx

        require_onnx()
    model = load_model(ckpt)
    network = fold_batchnorm(model) if fold_bn else model
    spec = deploy_spec(ckpt, input_frame=input_frame, branch=branch, batchnorm_folded=not has_batchnorm(network))
    deployed = DeployModel(network, spec).eval()
    program = trace(deployed, spec)
    with user_situations("export"):
        for target in targets:
            if target.suffix == ".pt2":
                save_program(program, spec, target)
            else:
                from msad.export.onnx import export_onnx

                export_onnx(program, spec, target)
    result = ExportResult(targets, spec)
    if check:
        result.max_abs_diff = _check(DeployModel(model, spec).eval(), spec, targets)
    return result


@torch.no_grad()
def _check(eager: DeployModel, spec: DeploySpec, files: list[Path]) -> dict[str, float]:
    """Largest head-map difference of each file from the unfolded eager model on a random batch."""
    d = spec.size_divisibility
    width = d * (spec.coarsest_stride // d + 1)  # the coarsest map gets two cells
    images = torch.rand(1, 3, 2 * d, width, generator=torch.Generator().manual_seed(0)) * 255
    reference = eager(images)
    diffs = {}
    for path in files:
        got = open_backend(path, trust_pt2=True)(images)  # the file this process just wrote
        diffs[str(path)] = max(float((a.float() - b.cpu().float()).abs().max()) for a, b in zip(reference, got, strict=True))
    return diffs
