"""Training state for exact resume, without pickle: ``state-{iter}.safetensors`` + ``state.json``.

The safetensors file holds every tensor (model, EMA, optimizer buffers such as SGD momentum, torch RNG states);
``state.json`` holds everything else (iteration, optimizer hyper-parameters and scalar state, Python/NumPy RNG
states, caller extras such as the best metric) and names the tensor file. The tensor file is written first and
``state.json`` last, both atomically, so the pair on disk is always consistent: a crash before the JSON is
replaced leaves the previous JSON pointing at the previous tensor file, which is only removed afterwards.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from msad.errors import CheckpointError
from msad.serialization import atomic_write_text, read_tensors, save_tensors, state_mismatch

__all__ = [
    "STATE_FORMAT",
    "STATE_JSON",
    "TrainingState",
    "capture_rng_state",
    "restore_rng_state",
    "save_training_state",
    "load_training_state",
    "has_training_state",
    "update_state_extra",
]

#: ``format`` of training-state files.
STATE_FORMAT = "msad-state/1"
#: Name of the JSON file that makes a training state current.
STATE_JSON = "state.json"
_TENSOR_FILE = re.compile(r"state-\d+\.safetensors")


@dataclass
class TrainingState:
    """What :func:`load_training_state` returns besides the modules and optimizer it restores in place.

    Attributes:
        iteration: number of completed iterations.
        rng: one RNG state per rank of the saving run (see :func:`capture_rng_state`).
        extra: the caller's JSON extras (best metric, checkpoint list, grad scaler…).
    """

    iteration: int
    rng: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states: Python, NumPy, torch CPU and every initialised CUDA device."""
    state: dict[str, Any] = {
        "python": _to_json(random.getstate()), "numpy": _to_json(np.random.get_state()), "torch": torch.get_rng_state()
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (missing parts are left as they are)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def has_training_state(directory: str | Path) -> bool:
    """Whether ``directory`` holds a ``state.json``."""
    return (Path(directory) / STATE_JSON).is_file()


def save_training_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    iteration: int,
    rng: list[dict[str, Any]] | dict[str, Any],
    extra: dict[str, Any],
) -> Path:
    """Write the training state of ``iteration`` (completed iterations) into ``directory``; return the JSON path.

    Args:
        directory: the run directory.
        model: the trained module (unwrapped from DDP).
        optimizer: its optimizer.
        ema: the EMA module, or ``None``.
        iteration: completed iterations.
        rng: :func:`capture_rng_state` of every rank (a list in rank order) or of this process.
        extra: JSON-serialisable extras, returned as they are by :func:`load_training_state`.
    """
    directory = Path(directory)
    rng_states = [rng] if isinstance(rng, dict) else list(rng)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in ema.state_dict().items()})
    opt_json, opt_tensors = _split_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    rng_json = []
    for rank, state in enumerate(rng_states):
        tensors[f"rng/{rank}/torch"] = state["torch"]
        for i, cuda_state in enumerate(state.get("cuda", [])):
            tensors[f"rng/{rank}/cuda/{i}"] = cuda_state
        rng_json.append({k: state[k] for k in ("python", "numpy") if k in state} | {"cuda": len(state.get("cuda", []))})
    tensor_name = f"state-{iteration:07d}.safetensors"
    save_tensors(directory / tensor_name, tensors, {"format": STATE_FORMAT})
    document = {
        "format": STATE_FORMAT,
        "iteration": iteration,
        "tensors": tensor_name,
        "optimizer": opt_json,
        "rng": rng_json,
        "extra": extra,
    }
    json_path = atomic_write_text(directory / STATE_JSON, json.dumps(document, indent=1, allow_nan=False))
    for old in directory.iterdir():
        if _TENSOR_FILE.fullmatch(old.name) and old.name != tensor_name:
            old.unlink(missing_ok=True)
    return json_path


def update_state_extra(directory: str | Path, *, iteration: int, changes: dict[str, Any]) -> bool:
    """Merge ``changes`` into the ``extra`` of the saved state if it is the state of ``iteration``; return whether it was.

    Lets a value known only after the checkpoint (the best metric of that iteration's evaluation) reach the state a
    resume will read. Only ``state.json`` is rewritten (atomically); the tensor file is untouched.
    """
    json_path = Path(directory) / STATE_JSON
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if document.get("iteration") != iteration:
        return False
    document["extra"] = {**document.get("extra", {}), **changes}
    atomic_write_text(json_path, json.dumps(document, indent=1, allow_nan=False))
    return True


def load_training_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None = None,
) -> TrainingState:
    """Restore ``model``, ``optimizer`` and ``ema`` in place from ``directory``; return the rest.

    RNG states are returned, not applied: call :func:`restore_rng_state` with this rank's entry.

    Raises:
        CheckpointError: no state, an unreadable or inconsistent one, or one that does not fit the model.
    """
    json_path = Path(directory) / STATE_JSON
    if not json_path.is_file():
        raise CheckpointError(f"no training state to resume in {Path(directory)} (missing {STATE_JSON})")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
        tensor_name = document["tensors"]
        if document.get("format") != STATE_FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, expected {STATE_FORMAT!r}")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{json_path}: unreadable training state ({err})") from err
    tensors, _ = read_tensors(json_path.parent / tensor_name, expected_format=STATE_FORMAT)
    _load_module(model, _prefixed(tensors, "model/"), json_path)
    if ema is not None:
        ema_tensors = _prefixed(tensors, "ema/")
        _load_module(ema, ema_tensors or _prefixed(tensors, "model/"), json_path)
    try:
        optimizer.load_state_dict(_join_optimizer(document["optimizer"], tensors))
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{json_path}: optimizer state does not fit this optimizer ({err})") from err
    rng = []
    for rank, entry in enumerate(document["rng"]):
        state = {k: entry[k] for k in ("python", "numpy") if k in entry}
        state["torch"] = tensors[f"rng/{rank}/torch"]
        if entry.get("cuda"):
            state["cuda"] = [tensors[f"rng/{rank}/cuda/{i}"] for i in range(entry["cuda"])]
        rng.append(state)
    return TrainingState(iteration=int(document["iteration"]), rng=rng, extra=document.get("extra", {}))


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """An optimizer ``state_dict`` as (JSON part, tensors keyed ``optimizer/{param}/{name}``)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        scalars[str(index)] = {}
        for name, value in param_state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{index}/{name}"] = value
            else:
                scalars[str(index)][name] = value
    return {"param_groups": state_dict["param_groups"], "state": scalars}, tensors


def _join_optimizer(saved: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Inverse of :func:`_split_optimizer`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(values) for i, values in saved["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": saved["param_groups"]}


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_module(module: nn.Module, state: dict[str, Tensor], source: Path) -> None:
    """``load_state_dict(strict=True)`` with a one-line :class:`CheckpointError` on mismatch."""
    problem = state_mismatch(module.state_dict(), state)
    if problem:
        raise CheckpointError(f"{source}: saved model does not fit this model: {problem}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{source}: saved model does not fit this model ({first})") from err


def _to_json(value: Any) -> Any:
    """Tuples and NumPy arrays/scalars as JSON-friendly lists and numbers."""
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if np is not None and isinstance(value, np.ndarray):
        return value.tolist()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    return value
