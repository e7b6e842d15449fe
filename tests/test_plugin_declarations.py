"""What a plugin builder declares about its options (``msad.plugin_declarations``), refused at once when wrong."""

from __future__ import annotations

import pytest

from msad.plugin_declarations import OptionDeclaration, declaration_of, declare_options


def _builder(*, size: int = 1, init: str | None = None, frozen: int = 0, norm: str = "bn") -> None:
    """A builder to decorate."""


def test_a_declaration_is_read_back_and_names_what_is_not_architecture() -> None:
    def build(*, size: int = 1, init: str | None = None, frozen: int = 0, norm: str = "bn") -> None: ...

    declared = declaration_of(declare_options(init_files=("init",), freeze="frozen", training=("norm",), width="size")(build))
    assert declared == OptionDeclaration(init_files=("init",), freeze="frozen", training=("norm",), width="size")
    assert declared.not_architecture == {"init", "frozen", "norm"}  # the width is architecture, compared on its own
    assert declared.names() == {"init": "init file", "norm": "training", "frozen": "freeze", "size": "width"}
    assert declaration_of(_builder) == OptionDeclaration()  # undeclared: every option is architecture


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"init_files": ("weights",)}, r"^declare_options on _builder: 'weights' is not a keyword parameter of the builder "
                                   r"\(its parameters: size, init, frozen, norm\)$"),
    ({"init_files": ("init",), "training": ("init",)}, r"'init' is declared more than once"),
    ({"init_files": "init"}, r"^declare_options\(init_files='init'\): give a tuple of option names, e\.g\. \('init',\)$"),
])
def test_a_wrong_declaration_is_refused_when_the_builder_is_decorated(kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        declare_options(**kwargs)(_builder)


def test_a_declaration_attribute_not_made_by_declare_options_is_refused() -> None:
    def build() -> None: ...

    build.__msad_options__ = {"init_files": ["weights"]}  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="not set by msad's declare_options"):
        declaration_of(build)
