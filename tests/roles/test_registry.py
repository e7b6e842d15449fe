"""The roles by name, the facts each owns, and the rule that nothing outside ``msad.roles`` compares role names."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from msad.levels import HEAD_LEVELS, LevelPairing
from msad.roles import ROLES, Baseline, Student, Teacher, get_role, role_names

PACKAGE = Path(__file__).resolve().parents[2] / "msad"


def test_roles_are_found_by_name_and_an_unknown_name_is_refused() -> None:
    assert role_names() == ("baseline", "teacher", "student")
    assert [type(get_role(n)) for n in role_names()] == [Baseline, Teacher, Student]
    assert get_role(ROLES["teacher"]) is ROLES["teacher"]
    with pytest.raises(ValueError, match="unknown role 'backbone'; expected one of baseline, teacher, student"):
        get_role("backbone")


def test_each_role_is_trained_by_its_recipe_stage() -> None:
    assert {n: r.stage for n, r in ROLES.items()} == {"baseline": "train", "teacher": "teacher", "student": "distill"}


def test_level_routing_of_each_role() -> None:
    pairing = LevelPairing(k=2)
    identity = {lvl: lvl for lvl in HEAD_LEVELS}
    assert get_role("baseline").routing(pairing) == (identity, ["p3", "p4", "p5", "p6", "p7"])
    assert get_role("teacher").routing(pairing) == (identity, ["p2", "p3", "p4", "p5", "p6", "p7"])
    student = {"p3": "p2", "p4": "p3", "p5": "p4", "p6": "p5", "p7": "p6"}
    assert get_role("student").routing(pairing) == (student, ["p2", "p3", "p4", "p5", "p6"])


def test_frames_factors_and_branches(tiny_recipe) -> None:
    k = tiny_recipe.teacher.k
    student = get_role("student")
    assert (student.input_factor(tiny_recipe, "hr"), student.output_factor(tiny_recipe, "hr")) == (k, 1)
    assert (student.input_factor(tiny_recipe, "lr"), student.output_factor(tiny_recipe, "lr")) == (1, k)
    for name in ("baseline", "teacher"):
        role = get_role(name)
        assert role.frames == ("hr",)
        with pytest.raises(ValueError, match=f"a {name} takes hr images, not 'lr'"):
            role.input_factor(tiny_recipe, "lr")
    assert get_role("teacher").branch(tiny_recipe) == tiny_recipe.teacher.eval_branch
    assert get_role("teacher").branch(tiny_recipe, "lr") == "lr"
    with pytest.raises(ValueError, match="a student has no branches"):
        get_role("student").branch(tiny_recipe, "hr")


def test_what_a_resume_must_keep_grows_with_the_stage() -> None:
    base = ("model", "data", "solver", "run.seed")
    assert get_role("baseline").resume_sections == base
    assert get_role("teacher").resume_sections == (*base, "teacher")
    assert get_role("student").resume_sections == (*base, "teacher", "distill")


def test_the_cli_choices_name_the_roles_facts() -> None:
    from msad.cli import choices  # torch-free, so it declares the closed sets itself
    from msad.convert.detectron2 import DETECTRON2_ROLES

    assert sorted(get_args(choices.ConvertRole)) == sorted(DETECTRON2_ROLES) and set(DETECTRON2_ROLES) <= set(role_names())
    assert sorted(get_args(choices.ExportBranch)) == sorted(get_role("teacher").branches)


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr} | _names(node.value)
    return set()


def _role_literals(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in ROLES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_role_literals(e) for e in node.elts)
    return False


def test_nothing_outside_the_roles_compares_a_role_with_a_role_name() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "roles":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if any("role" in name.lower() for o in operands for name in _names(o)) and any(map(_role_literals, operands)):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, f"role rules outside msad.roles (ask the role instead): {found}"
