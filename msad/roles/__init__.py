"""The roles msad trains, as objects: :class:`Baseline`, :class:`Teacher`, :class:`Student` (one protocol,
:class:`Role`), found by name with :func:`get_role`.

Every rule that depends on the role — solver stage, level routing, padding per frame, model building, training
objective, network input, inference branch, deployed graph, resume check, description — is a method or attribute
of its role; callers make one call on the role and never compare role names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msad.roles.baseline import Baseline
from msad.roles.role import FRAMES, DeployFrame, Role, TaskParts
from msad.roles.student import Student
from msad.roles.teacher import Teacher, TeacherBranch

if TYPE_CHECKING:
    from torch import nn

    from msad.config import Recipe

__all__ = [
    "FRAMES", "ROLES", "Role", "TaskParts", "DeployFrame", "Baseline", "Teacher", "TeacherBranch", "Student",
    "get_role", "role_names", "build_model",
]

#: The roles by name, in the order a run of MSAD meets them.
ROLES: dict[str, Role] = {role.name: role for role in (Baseline(), Teacher(), Student())}


def get_role(name: str | Role) -> Role:
    """The role called ``name`` (a role is returned as it is).

    Raises:
        ValueError: no role has that name.
    """
    if isinstance(name, Role):
        return name
    try:
        return ROLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown role {name!r}; expected one of {', '.join(ROLES)}") from None


def role_names() -> tuple[str, ...]:
    """The names of the roles (``baseline``, ``teacher``, ``student``)."""
    return tuple(ROLES)


def build_model(recipe: Recipe, *, role: str | Role, num_classes: int, teacher: nn.Module | None = None) -> nn.Module:
    """The model of ``role`` (:meth:`Role.build_model`)."""
    return get_role(role).build_model(recipe, num_classes=num_classes, teacher=teacher)
