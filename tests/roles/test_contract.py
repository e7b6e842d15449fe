"""One contract over every role: build, a training step, evaluation, prediction and the exported graph.

A fourth role (or a second head) registered in :data:`msad.roles.ROLES` is held to it without a new test.
The recipe pads the teacher's batches to 128 (not the ``data.size_divisibility · k`` = 64 a single-resolution
model would use) so that a role padding one of its frames the wrong way gives other detections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msad.api.prediction import Predictor
from msad.build import build_train_dataset
from msad.checkpoint import detector_metadata, load_model, read_checkpoint
from msad.config import Recipe
from msad.export import DeployModel, ExportedDetector, deploy_spec
from msad.roles import ROLES, Role, get_role
from msad.serialization import save_weights

METRIC_NAMES = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


@pytest.fixture(scope="module")
def recipe(tiny_recipe: Recipe) -> Recipe:
    """The tiny recipe with a teacher multiple of 128, twice the 64 a single-resolution model at ×2 would need."""
    teacher = tiny_recipe.teacher.model_copy(update={"size_divisibility": 128})
    return tiny_recipe.model_copy(update={"teacher": teacher})


@pytest.fixture(scope="module")
def train_set(recipe: Recipe):
    return build_train_dataset(recipe)


class _EagerDetector(ExportedDetector):
    """:class:`ExportedDetector`'s pre- and post-processing around the eager graph (no tracing: the traced files
    are held to the eager graph by ``tests/export/test_export.py``)."""

    def __init__(self, graph: DeployModel, spec, *, score_threshold: float) -> None:
        self.path, self.spec, self.score_threshold = Path("eager"), spec, score_threshold
        self.backend = lambda images: graph(images)


def _odd_image() -> torch.Tensor:
    """A 120×150 image: resized to the test size it is 128×160, which 64 divides in neither side and 128 in one."""
    return torch.randint(0, 256, (3, 120, 150), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _trained_task(role: Role, recipe: Recipe, train_set):
    labels = train_set.label_space
    teacher = get_role("teacher").build_model(recipe, num_classes=len(labels)).eval()  # read by the student only
    metadata = detector_metadata(recipe, role=role.name, label_space=list(labels))
    return role.build_task(recipe, label_space=labels, metadata=metadata, teacher=teacher, train_set=train_set,
                           val_batch_size=4)


@pytest.mark.parametrize("name", list(ROLES))
def test_every_role_builds_trains_evaluates_predicts_and_exports_alike(
    name: str, recipe: Recipe, train_set, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    role = get_role(name)
    task = _trained_task(role, recipe, train_set)

    # a training step: finite losses, and a gradient for every trainable parameter (DDP needs no unused ones)
    batch = role.collator(recipe)([train_set[(i, 0)] for i in range(2)])
    losses = task.losses(task.model.train(), batch, 0)
    sum(losses.values()).backward()
    assert losses and all(torch.isfinite(v) for v in losses.values())
    unused = [n for n, p in task.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{name}: parameters without a gradient: {unused[:5]}"

    # evaluation: the COCO metrics on the validation set
    metrics = task.evaluate(task.model.eval())
    assert METRIC_NAMES <= set(metrics)

    # the weights file it writes is read back as this role, and predicted with and exported alike
    path = save_weights(tmp_path / f"{name}.safetensors", task.model.state_dict(), task.metadata())
    ckpt = read_checkpoint(path)
    assert ckpt.role == name and get_role(ckpt.role) is role
    image = _odd_image()
    for frame in role.frames:
        spec = deploy_spec(ckpt, input_frame=frame)
        assert spec.size_divisibility == role.size_divisibility(recipe, frame)
        exported = _EagerDetector(DeployModel(load_model(ckpt), spec).eval(), spec, score_threshold=0.0)
        want = Predictor(ckpt, score_threshold=0.0, device="cpu", input_scale=frame)(image)
        got = exported(image)
        assert len(want.scores) > 0
        torch.testing.assert_close(got.scores.sort().values[-20:], want.scores.sort().values[-20:], atol=1e-4, rtol=0,
                                   msg=lambda m, f=frame: f"{name} on {f} images: the exported graph differs from predict: {m}")


def test_the_exported_student_on_hr_images_is_padded_as_evaluation_pads_it(recipe: Recipe) -> None:
    student = get_role("student")
    assert student.size_divisibility(recipe, "hr") == recipe.teacher.size_divisibility == 128
    assert student.size_divisibility(recipe, "lr") == recipe.data.size_divisibility
    assert student.collator(recipe).size_divisibility == 128  # training and evaluation batches


@pytest.mark.parametrize("branch", ["hr", "lr", "fused"])
def test_an_exported_teacher_runs_the_branch_the_recipe_asks_for(branch: str, recipe: Recipe, train_set, tmp_path: Path) -> None:
    teacher_recipe = recipe.model_copy(update={"teacher": recipe.teacher.model_copy(update={"eval_branch": branch})})
    role = get_role("teacher")
    torch.manual_seed(0)
    task = _trained_task(role, teacher_recipe.model_copy(update={"data": recipe.data.model_copy(update={"val_annotations": ""})}), train_set)
    path = save_weights(tmp_path / "teacher.safetensors", task.model.state_dict(), task.metadata())
    ckpt = read_checkpoint(path)
    spec = deploy_spec(ckpt)
    assert spec.branch == branch
    model = load_model(ckpt)
    images = torch.rand(1, 3, 128, 256, generator=torch.Generator().manual_seed(1)) * 255
    graph = DeployModel(model, spec).eval()
    with torch.no_grad():
        got = graph(images)
        norm = (images - torch.tensor(spec.pixel_mean).view(1, 3, 1, 1)) / torch.tensor(spec.pixel_std).view(1, 3, 1, 1)
        outputs = model(norm)
    for other in ("hr", "lr", "fused"):
        want = [getattr(outputs.branch(other)[lvl], f) for lvl in spec.levels for f in ("cls_logits", "box_regression", "centerness")]
        same = all(torch.allclose(a, b, atol=1e-4) for a, b in zip(got, want, strict=True))
        assert same == (other == branch), f"exported for {branch}, {'equal' if same else 'unequal'} to {other}"
    override = deploy_spec(ckpt, branch="lr" if branch != "lr" else "hr")
    assert override.branch != branch  # --branch wins over the recipe
