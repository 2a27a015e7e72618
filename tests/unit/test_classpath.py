"""Class names read from a dump resolve only to allow-listed classes, exactly."""

from __future__ import annotations

import os
import sys
import types

import pytest

from migrator.dumprestore.manifest import disallowed_types
from migrator.worker.classpath import ClassRefusedError, is_allowed, resolve_class
from migrator.worker.decode import Decoder, DisallowedTypeError

RICH = "migrator.worker.canaries.rich"


def test_allow_listed_classes_resolve() -> None:
    from migrator.worker.canaries import rich

    name = f"{RICH}.CanaryModel"
    assert resolve_class(name, {name}) is rich.CanaryModel
    assert resolve_class("langchain_core.messages.AIMessage", ()).__name__ == "AIMessage"


def test_a_nested_class_resolves_through_its_outer_class(tmp_path, monkeypatch) -> None:
    (tmp_path / "nested_app.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "nested_app.Outer.Inner"
    assert resolve_class(name, {name}).__qualname__ == "Outer.Inner"


@pytest.mark.parametrize(
    "name",
    [
        "langchain_core.messages.ai.logging.os.system",  # the reported attack
        "langchain_core.messages.utils.inspect.os.system",
        "langchain_core.messages.base",  # a module, not a class
        "langchain_core.messages.ai",
    ],
)
def test_message_paths_never_walk_through_modules(name: str) -> None:
    with pytest.raises(ClassRefusedError, match=name.replace(".", r"\.")):
        resolve_class(name, ())
    if name.count(".") > 2:  # the host's check is by name: one identifier below the package
        assert not is_allowed(name, ())
        assert disallowed_types([name], ()) == [name]


def test_an_allow_listed_path_through_a_module_is_still_refused() -> None:
    """Even a careless allowlist entry cannot reach a function through a module."""
    name = "logging.os.system"
    with pytest.raises(ClassRefusedError):
        resolve_class(name, {name})


def test_functions_and_reexports_are_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "reexport_app.py").write_text(
        "from collections import OrderedDict\nfrom os import system\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("reexport_app.OrderedDict", "reexport_app.system"):
        with pytest.raises(ClassRefusedError, match="not a class defined in module reexport_app"):
            resolve_class(name, {name})


def test_not_on_the_allowlist_imports_nothing(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "this_module_must_not_be_imported", raising=False)
    with pytest.raises(ClassRefusedError, match="not in the allowlist"):
        resolve_class("this_module_must_not_be_imported.Cls", {"other.Cls"})
    assert "this_module_must_not_be_imported" not in sys.modules


def test_a_module_raising_at_import_is_named(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ClassRefusedError, match="broken_app raised RuntimeError: boom at import"):
        resolve_class("broken_app.Model", {"broken_app.Model"})


def test_decoder_refuses_the_crafted_message_without_calling_anything(monkeypatch) -> None:
    called: list[str] = []
    monkeypatch.setattr(os, "system", lambda command: called.append(command) or 0)
    value = {
        "__type__": "message",
        "class": "ai.logging.os.system",
        "fields": {"command": "echo pwned"},
    }
    with pytest.raises(DisallowedTypeError, match="langchain_core.messages.ai.logging.os.system"):
        Decoder().decode(value)
    assert called == []
    assert isinstance(sys.modules.get("os"), types.ModuleType)
