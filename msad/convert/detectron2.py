"""Original MSAD (detectron2) checkpoints → msad state dicts.

The released ``model_final.pth`` files are ``{"model": state_dict, ...}`` written by detectron2's checkpointer
(``dvlab-research/MSAD``: ``TFCOS`` in ``arch_t.py`` for teachers, ``SFCOS`` in ``arch_s.py`` for students).
Every key of a teacher file::

    T_backbone.bottom_up.features.0.0.weight                   stem conv, full width [64, 3, 7, 7]
    T_backbone.bottom_up.features.0.1.bn.{j}.{weight,bias,running_mean,running_var,num_batches_tracked}
    T_backbone.bottom_up.features.{b}.body.{0,3,6}.weight      bottleneck convs, b = 1…16 (R-50)
    T_backbone.bottom_up.features.{b}.body.{1,4,7}.bn.{j}.*    their switchable BNs
    T_backbone.bottom_up.features.{b}.shortcut.{0.weight,1.bn.{j}.*}   first block of each stage
    T_backbone.fpn_lateral{2..5}.{weight,bias}, T_backbone.fpn_output{2..5}.{weight,bias}
    T_backbone.top_block.p6.{weight,bias}, T_backbone.top_block.p7.{weight,bias}    (p6 from res5)
    T_fcos_head.{cls,bbox}_tower.{3i}.{weight,bias}            tower convs (they have a bias)
    T_fcos_head.{cls,bbox}_tower.{3i+1}.{weight,bias}          GroupNorm(32)
    T_fcos_head.cls_logits.{weight,bias}, T_fcos_head.bbox_pred.weight, T_fcos_head.ctrness.weight
    T_fcos_head.scales.{0..4}.scale                            shape [1], one per head level p3…p7
    SE.fc.0.weight [32, 512], SE.fc.2.weight [2, 32]           C-FF (no biases)

A student file holds the same ``T_*``/``SE.*`` keys (its frozen teacher, dropped here) plus ``S_backbone.*`` and
``S_fcos_head.*`` with the teacher's layout; the student never uses ``S_backbone.top_block.p7`` (its head reads
``p2…p6``), and msad's student neck does not build it, so it is dropped too.

Backbone widths: the slimmable convs hold full-width weights and each BN position one BN per width of
``WIDTH_MULT_LIST`` (``j`` indexes ``(0.25, 0.5, 0.75, 1.0)``); the network ran at ``WIDTH_MULT``, slicing the
leading channels. msad stores the conv weights at ``max(widths)`` and one BN per width of its backbone (by
default only the active width), so the converter slices the convs and picks, for each msad width, the original
BN of that width. The FPN was built for the active width only, so its lateral convs reveal the width a file
was trained at; a recipe of another width is refused.

Input: detectron2 fed BGR images minus ``(103.53, 116.28, 123.675)``, not divided (std 1). msad feeds RGB
normalised by the recipe's mean and std. With ``pixel_std`` the stem conv is rewritten so that the converted
model computes exactly what the original computed (zero padding is zero in both conventions).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from msad.errors import CheckpointError
from msad.levels import BACKBONE_LEVELS, HEAD_LEVELS, LevelPairing
from msad.models.backbones.slimmable_shapes import DEPTHS, STAGE_CHANNELS, channels_at
from msad.roles import get_role

__all__ = [
    "ORIGINAL_WIDTHS",
    "DETECTRON2_PIXEL_MEAN_RGB",
    "DETECTRON2_ROLES",
    "detectron2_role",
    "detectron2_num_classes",
    "detectron2_width",
    "load_detectron2_checkpoint",
    "fold_input_normalization",
    "convert_detectron2_state",
]

#: ``cfg.MODEL.SLRESNETS.WIDTH_MULT_LIST`` of every released checkpoint (BN ``j`` belongs to ``ORIGINAL_WIDTHS[j]``).
ORIGINAL_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: detectron2's default ``MODEL.PIXEL_MEAN`` (BGR ``103.53, 116.28, 123.675``) in RGB order.
DETECTRON2_PIXEL_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)

_BN_STATS = ("weight", "bias", "running_mean", "running_var")
_PREFIX = {"teacher": "T", "student": "S"}
#: The roles an original MSAD checkpoint can hold.
DETECTRON2_ROLES: tuple[str, ...] = tuple(_PREFIX)
_TEACHER_ONLY = ("T_backbone.", "T_fcos_head.", "SE.")
#: Keys of an original file of each role that msad's model of that role has no place for: a student's file
#: also holds its teacher, and the P7 block of a pyramid that ends at P6.
_UNUSED = {"teacher": (), "student": (*_TEACHER_ONLY, "S_backbone.top_block.p7.")}
#: The C-FF fusion's layers in an original teacher (``SE.fc.*`` → ``fusion.fc.*``); a student has none.
_FUSION_LAYERS = {"teacher": ("0", "2"), "student": ()}
_HEAD_RENAME = {"cls_logits": "cls_logits", "bbox_pred": "box_pred", "ctrness": "centerness"}
_HEAD_REQUIRED = ("cls_logits.weight", "cls_logits.bias", "bbox_pred.weight", "ctrness.weight")

# A channel count as a function of the width: (full channels, divisor); (0, 0) is the 3-channel image.
_Channels = tuple[int, int]


def _channels(spec: _Channels, width: float) -> int:
    full, div = spec
    return 3 if full == 0 else channels_at(full, width) // div


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a DistributedDataParallel ``module.`` prefix (detectron2 normally removes it already)."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _few(keys: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > n else "")


def detectron2_role(state: Mapping[str, Tensor]) -> str:
    """``"student"`` if the state has ``S_backbone.*``/``S_fcos_head.*`` keys, ``"teacher"`` if it has
    ``T_backbone.*`` keys only.

    Raises:
        CheckpointError: neither; not an original MSAD checkpoint.
    """
    keys = list(_strip_module(state))
    if any(k.startswith(("S_backbone.", "S_fcos_head.")) for k in keys):
        return "student"
    if any(k.startswith("T_backbone.") for k in keys):
        return "teacher"
    raise CheckpointError(
        "not an original MSAD detectron2 checkpoint: no T_backbone.* or S_backbone.* keys "
        f"(first keys: {_few(sorted(keys), 3) or 'none'})"
    )


def detectron2_num_classes(state: Mapping[str, Tensor], role: str) -> int:
    """Rows of the role's classification layer (``{T,S}_fcos_head.cls_logits.weight``).

    Raises:
        CheckpointError: the key is missing.
    """
    key = f"{_PREFIX[role]}_fcos_head.cls_logits.weight"
    state = _strip_module(state)
    if key not in state:
        raise CheckpointError(f"the original checkpoint lacks {key}")
    return int(state[key].shape[0])


def detectron2_width(state: Mapping[str, Tensor], role: str, widths: Sequence[float] = ORIGINAL_WIDTHS) -> float | None:
    """The backbone width a file was trained at, read from ``fpn_lateral5``'s input channels (``None`` if unknown)."""
    weight = _strip_module(state).get(f"{_PREFIX[role]}_backbone.fpn_lateral5.weight")
    if weight is None or weight.dim() != 4:
        return None
    return next((float(w) for w in widths if channels_at(2048, w) == weight.shape[1]), None)


def load_detectron2_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a detectron2 ``model_final.pth`` safely and return its ``"model"`` state dict (CPU tensors).

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``; extras such as ``"iteration"`` are ignored.
    Numpy arrays that the loader lets through are turned into tensors; a ``module.`` prefix is removed.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, holds objects ``weights_only`` refuses, or
            has no ``"model"`` dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many error types for bad files
        text = " ".join(str(err).split())[:160]
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): the file is truncated or corrupt, or "
            f"holds Python objects other than tensors (e.g. numpy arrays; re-save its 'model' dict as tensors) "
            f"({type(err).__name__}: {text})"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: expected a detectron2 checkpoint {{'model': state_dict, ...}}")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
            value = torch.as_tensor(value).clone()
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: model entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key] = value
    return _strip_module(out)


def fold_input_normalization(weight: Tensor, pixel_std: Sequence[float]) -> Tensor:
    """Rewrite a first conv trained on detectron2 input (BGR, mean subtracted, std 1) for msad input.

    msad feeds ``(rgb - mean) / pixel_std`` with ``mean == DETECTRON2_PIXEL_MEAN_RGB``; the original saw
    ``bgr - mean``. So ``W'[:, c] = W[:, 2 - c] · pixel_std[c]`` gives identical outputs.
    """
    std = torch.as_tensor(pixel_std, dtype=torch.float64).view(1, 3, 1, 1)
    return (weight.flip(1).double() * std).to(weight.dtype)


def _backbone_layout(depth: int) -> Iterator[tuple[str, str, str, _Channels, _Channels]]:
    """``(kind, original prefix, msad prefix, in channels, out channels)`` of every conv and BN position."""
    yield "conv", "features.0.0", "stem.conv", (0, 0), (64, 1)
    yield "bn", "features.0.1", "stem.bn", (64, 1), (64, 1)
    index, cin = 1, (64, 1)
    for stage, (blocks, cout) in enumerate(zip(DEPTHS[depth], STAGE_CHANNELS, strict=True)):
        out, mid = (cout, 1), (cout, 4)  # the original's mid is int(out · w) // 4, as msad's
        for i in range(blocks):
            src, dst = f"features.{index}", f"{BACKBONE_LEVELS[stage]}.{i}"
            yield "conv", f"{src}.body.0", f"{dst}.conv1", cin, mid
            yield "bn", f"{src}.body.1", f"{dst}.bn1", mid, mid
            yield "conv", f"{src}.body.3", f"{dst}.conv2", mid, mid
            yield "bn", f"{src}.body.4", f"{dst}.bn2", mid, mid
            yield "conv", f"{src}.body.6", f"{dst}.conv3", mid, out
            yield "bn", f"{src}.body.7", f"{dst}.bn3", out, out
            if i == 0:
                yield "conv", f"{src}.shortcut.0", f"{dst}.downsample.0", cin, out
                yield "bn", f"{src}.shortcut.1", f"{dst}.downsample.1", out, out
            index, cin = index + 1, out


class _Collector:
    """Accumulates converted tensors and the problems found, to report them all at once."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        self.state = state
        self.used: set[str] = set()
        self.out: dict[str, Tensor] = {}
        self.missing: list[str] = []
        self.wrong: list[str] = []

    def take(self, key: str) -> Tensor | None:
        if key not in self.state:
            self.missing.append(key)
            return None
        self.used.add(key)
        return self.state[key]


def _convert_backbone(c: _Collector, src: str, dst: str, *, depth: int, widths: Sequence[float],
                      source_widths: Sequence[float], pixel_std: Sequence[float] | None) -> None:
    full, source_full = max(widths), max(source_widths)
    for kind, s, d, cin, cout in _backbone_layout(depth):
        if kind == "conv":
            weight = c.take(f"{src}{s}.weight")
            if weight is None:
                continue
            expect = (_channels(cout, source_full), _channels(cin, source_full))
            if weight.dim() != 4 or tuple(weight.shape[:2]) != expect:
                c.wrong.append(f"{src}{s}.weight {tuple(weight.shape)} (expected {expect} + kernel)")
                continue
            weight = weight[: _channels(cout, full), : _channels(cin, full)].clone()
            if s == "features.0.0" and pixel_std is not None:
                weight = fold_input_normalization(weight, pixel_std)
            c.out[f"{dst}{d}.weight"] = weight
            continue
        for j, sw in enumerate(source_widths):  # every original BN must be there, even those not kept
            for stat in (*_BN_STATS, "num_batches_tracked"):
                key = f"{src}{s}.bn.{j}.{stat}"
                if stat == "num_batches_tracked" and key not in c.state:
                    continue  # FrozenBN layouts have none
                tensor = c.take(key)
                expect = (_channels(cout, sw),)
                if tensor is not None and stat != "num_batches_tracked" and tuple(tensor.shape) != expect:
                    c.wrong.append(f"{key} {tuple(tensor.shape)} (expected {expect})")
        for j, w in enumerate(widths):
            i = list(source_widths).index(w)
            for stat in _BN_STATS:
                key = f"{src}{s}.bn.{i}.{stat}"
                if key in c.state:
                    c.out[f"{dst}{d}.bns.{j}.{stat}"] = c.state[key]
            count = c.state.get(f"{src}{s}.bn.{i}.num_batches_tracked", torch.tensor(0, dtype=torch.long))
            c.out[f"{dst}{d}.bns.{j}.num_batches_tracked"] = count


def _convert_fpn(c: _Collector, src: str, dst: str, *, with_p7: bool) -> None:
    pairs = [(f"fpn_{kind}{i}", f"{'lateral' if kind == 'lateral' else 'output'}.p{i}")
             for kind in ("lateral", "output") for i in range(2, 6)]
    pairs += [("top_block.p6", "p6")] + ([("top_block.p7", "p7")] if with_p7 else [])
    for s, d in pairs:
        for param in ("weight", "bias"):
            tensor = c.take(f"{src}{s}.{param}")
            if tensor is not None:
                c.out[f"{dst}{d}.{param}"] = tensor


def _convert_head(c: _Collector, src: str, dst: str, *, tower_bias: bool) -> None:
    for s in _HEAD_REQUIRED:
        tensor = c.take(f"{src}{s}")
        if tensor is not None:
            module, param = s.split(".")
            c.out[f"{dst}{_HEAD_RENAME[module]}.{param}"] = tensor
    for level_index, level in enumerate(HEAD_LEVELS):
        tensor = c.take(f"{src}scales.{level_index}.scale")
        if tensor is not None:
            if tensor.numel() != 1:
                c.wrong.append(f"{src}scales.{level_index}.scale {tuple(tensor.shape)} (expected (1,))")
                continue
            c.out[f"{dst}scales.{level}"] = tensor.reshape(())
    for tower, renamed in (("cls_tower", "cls_tower"), ("bbox_tower", "box_tower")):
        for key in sorted(k for k in c.state if k.startswith(f"{src}{tower}.")):
            rest = key[len(f"{src}{tower}."):]
            c.used.add(key)
            layer = rest.split(".")[0]
            weight = c.state.get(f"{src}{tower}.{layer}.weight")
            is_conv_bias = rest.endswith(".bias") and weight is not None and weight.dim() == 4
            if is_conv_bias and not tower_bias:
                if torch.count_nonzero(c.state[key]):
                    c.wrong.append(f"{key} is nonzero, but msad's head has bias-free tower convs "
                                   "(converting would change the outputs)")
                continue
            c.out[f"{dst}{renamed}.{rest}"] = c.state[key]


def convert_detectron2_state(
    state: Mapping[str, Tensor],
    *,
    role: str,
    width: float,
    widths: Sequence[float] | None = None,
    depth: int = 50,
    source_widths: Sequence[float] = ORIGINAL_WIDTHS,
    pixel_std: Sequence[float] | None = None,
    tower_bias: bool = True,
) -> dict[str, Tensor]:
    """Map an original MSAD state dict onto the keys of msad's ``build_model(recipe, role=role)``.

    Teacher keys become ``detector.{backbone,neck,head}.*`` and ``fusion.*``; student keys ``backbone.*``,
    ``neck.*``, ``head.*`` (see the module docstring for what is dropped). Pure: ``state`` is not modified.

    Args:
        state: the ``"model"`` dict of the file.
        role: ``"teacher"`` or ``"student"``; must be what the keys say (:func:`detectron2_role`).
        width: the backbone width of the msad model; must be the one the file was trained at.
        widths: the msad backbone's width list (default ``(width,)``); each must be in ``source_widths``.
        depth: ResNet depth (50 or 101).
        source_widths: the original ``WIDTH_MULT_LIST``.
        pixel_std: msad's input std; when given, the stem conv is rewritten for msad's RGB input
            (:func:`fold_input_normalization`), otherwise it is copied as it is.
        tower_bias: whether msad's head towers have conv biases; if not, the original's must be zero.

    Raises:
        CheckpointError: wrong role, wrong width, or missing, unexpected or mis-shaped keys (the first few named).
    """
    if role not in _PREFIX:
        raise CheckpointError(f"original MSAD checkpoints hold a teacher or a student, not a {role!r}")
    state = _strip_module(state)
    found = detectron2_role(state)
    if found != role:
        raise CheckpointError(f"the original checkpoint holds a {found} (its keys say so), not a {role}")
    widths = (float(width),) if widths is None else tuple(float(w) for w in widths)
    source_widths = tuple(float(w) for w in source_widths)
    if depth not in DEPTHS:
        raise CheckpointError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
    if float(width) not in widths or any(w not in source_widths for w in widths):
        raise CheckpointError(f"msad widths {list(widths)} (active {width}) must be among the original's "
                              f"{list(source_widths)}")
    trained = detectron2_width(state, role, source_widths)
    if trained is not None and trained != float(width):
        raise CheckpointError(f"the original checkpoint was trained at width {trained} (its FPN reads "
                              f"{channels_at(2048, trained)} res5 channels), but the recipe's width is {width}")
    p, msad_role = _PREFIX[role], get_role(role)
    base = msad_role.detector_prefix
    c = _Collector(state)
    _convert_backbone(c, f"{p}_backbone.bottom_up.", f"{base}backbone.", depth=depth, widths=widths,
                      source_widths=source_widths, pixel_std=pixel_std)
    _convert_fpn(c, f"{p}_backbone.", f"{base}neck.", with_p7="p7" in msad_role.routing(LevelPairing(k=2))[1])
    _convert_head(c, f"{p}_fcos_head.", f"{base}head.", tower_bias=tower_bias)
    for layer in _FUSION_LAYERS[role]:
        tensor = c.take(f"SE.fc.{layer}.weight")
        if tensor is not None:
            c.out[f"fusion.fc.{layer}.weight"] = tensor
    ignored = _UNUSED[role]
    unexpected = sorted(k for k in state if k not in c.used and not k.startswith(ignored))
    problems = []
    if c.missing:
        problems.append(f"missing {len(c.missing)} key(s): {_few(c.missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
    if c.wrong:
        problems.append(f"{len(c.wrong)} bad tensor(s): {_few(c.wrong, 3)}")
    if problems:
        raise CheckpointError(f"not an original MSAD {role} checkpoint of a slimmable ResNet-{depth} "
                              f"(widths {list(source_widths)}): " + "; ".join(problems))
    return c.out
