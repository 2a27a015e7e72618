"""The task-id transform's namespace renaming, 1.0.0's bare child namespaces included."""

from __future__ import annotations

from migrator.worker.transforms import _rename_ns


def test_bare_1_0_0_child_namespace_gets_the_new_task_id():
    assert _rename_ns("child", 0, {}, {"child": "new-id"}) == "child:new-id"
    assert _rename_ns("outer:a|inner", 1, {}, {"inner": "n"}) == "outer:a|inner:n"


def test_named_namespace_renamed_by_old_id_and_unknown_left_alone():
    assert _rename_ns("child:old", 0, {"old": "new"}, {"child": "x"}) == "child:new"
    assert _rename_ns("other", 0, {}, {"child": "x"}) == "other"
