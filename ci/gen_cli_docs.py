"""Generate docs/cli.md, the CLI reference, from the click commands' own help.

Usage: python ci/gen_cli_docs.py [--check] [OUT]

Without --check, (re)write OUT (default docs/cli.md). With --check, exit 1 when OUT
differs from what would be generated (tests/cli/test_cli_docs.py does the same).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from migrator.cli import cli as cli_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "cli.md"
PROG = "langgraph-migrator"
WIDTH = 88

HEADER = """\
# CLI reference

Generated from the commands' own `--help` by `python ci/gen_cli_docs.py`; do not
edit by hand (`tests/cli/test_cli_docs.py` fails when this file is out of date).
Every option can also come from an environment variable or pyproject.toml
(`docs/configuration.md`). Exit codes: 0 pass, 1 gate failed, 2 usage,
3 database or environment, 4 lock busy (safe to retry), 5 migration rolled back,
70 a bug in the tool.
"""


def iter_commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``command``, depth first, sorted by name."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from iter_commands(command.commands[name], (*path, name))


def command_help(path: tuple[str, ...], command: click.Command) -> str:
    """The ``--help`` text of one command, as a terminal WIDTH columns wide shows it."""
    settings = {**cli_main.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(cli_main, info_name=PROG, **settings)
    cmd: click.Command = cli_main
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
        ctx = click.Context(cmd, info_name=part, parent=ctx)
    assert cmd is command
    return command.get_help(ctx).rstrip()


def render() -> str:
    """The whole of docs/cli.md."""
    parts = [HEADER]
    commands = list(iter_commands(cli_main))
    parts.append("## Commands\n")
    for path, _ in commands[1:]:
        name = " ".join(path)
        parts.append(f"- [`{name}`](#{'-'.join(path)})")
    parts.append("")
    for path, command in commands:
        title = " ".join((PROG, *path))
        anchor = "-".join(path) if path else PROG
        parts.append(f'<a id="{anchor}"></a>\n\n## `{title}`\n')
        parts.append("```text\n" + command_help(path, command) + "\n```\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Write or check the reference; returns the exit code."""
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    out = Path(rest[0]) if rest else DEFAULT_OUT
    text = render()
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run python ci/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
