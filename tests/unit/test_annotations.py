"""GitHub Actions annotations: where they point, escaping, only under Actions."""

from __future__ import annotations

from migrator.annotations import Annotation, build_annotations, canary_module_file, emit_annotations
from migrator.report import Check, Report


def _report() -> Report:
    diff = {
        "path": "p",
        "kind": "node_reexecuted",
        "severity": "breaking",
        "summary": "step ran twice",
    }
    return Report(
        command="upgrade-check",
        checks=(
            Check("drift", "pass", "unchanged", canary="orders"),
            Check(
                "resume",
                "fail",
                "1 breaking",
                canary="orders",
                hazards=("H-TASK-ID",),
                differences=(diff,),
            ),
            Check(
                "rollback",
                "warn",
                "old code cannot read: a,b",
                canary="messages",
                hazards=("H-ROLLBACK-NULL",),
            ),
            Check(
                "rollback",
                "warn",
                "old code cannot read: a,b",
                canary="subgraph",
                hazards=("H-ROLLBACK-NULL",),
            ),
        ),
    )


def test_points_at_the_user_canary_line_else_pyproject(tmp_path):
    (tmp_path / "appcanaries.py").write_text('class Orders:\n    name = "orders"\n')
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    found = canary_module_file("appcanaries:CANARIES", tmp_path)
    assert found == tmp_path / "appcanaries.py"
    notes = build_annotations(
        _report(), pyproject=tmp_path / "pyproject.toml", canary_file=found, root=tmp_path
    )
    assert [(a.level, a.file, a.line) for a in notes] == [
        ("error", "appcanaries.py", 2),
        ("warning", "pyproject.toml", None),  # built-in canaries: the project file
    ]
    assert notes[0].message == "1 breaking\nstep ran twice"
    assert "rollback (messages, subgraph) [H-ROLLBACK-NULL]" in notes[1].title  # merged


def test_title_only_without_any_file(tmp_path):
    notes = build_annotations(_report(), root=tmp_path)
    assert all(a.file is None for a in notes)
    assert notes[0].render().startswith("::error title=langgraph-migrator upgrade-check%3A resume")


def test_escaping_follows_the_workflow_command_rules():
    line = Annotation("warning", "a:b,c", "50% done\nnext line", file="dir/f.py", line=3).render()
    assert line == "::warning file=dir/f.py,line=3,title=a%3Ab%2Cc::50%25 done%0Anext line"


def test_printed_only_under_github_actions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out: list[str] = []
    assert emit_annotations(_report(), environ={}, echo=out.append) == 0
    assert out == []
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)}
    assert emit_annotations(_report(), environ=env, echo=out.append) == 2
    assert out[0].startswith("::error ") and out[1].startswith("::warning ")
