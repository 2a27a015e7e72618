"""Where every CLI option can come from: flag > environment > pyproject.toml > default.

Generic over all commands (nothing here names one):

* **pyproject.toml** (the one in the working directory), table
  ``[tool.langgraph-migrator]``. A sub-table per command, named as on the command
  line (``[tool.langgraph-migrator.upgrade-check]``, ``[tool.langgraph-migrator.pg.up]``);
  keys are long flag names without dashes (``from``, ``threads-from``; ``_`` works
  too). Top-level keys apply to every command that has that option. The ``policy``
  table is the drift policy (``migrator.policy``), never a flag source. It becomes
  click's ``default_map``.
* **Environment**: ``LANGGRAPH_MIGRATOR_<COMMAND>_<FLAG>``
  (``LANGGRAPH_MIGRATOR_UPGRADE_CHECK_FROM``, ``LANGGRAPH_MIGRATOR_PG_UP_MAJOR``), then
  the short ``LANGGRAPH_MIGRATOR_<FLAG>`` (``LANGGRAPH_MIGRATOR_PG``)
  for options that take a value (not for on/off flags).
  click's ``auto_envvar_prefix`` form (``..._<COMMAND>_<PARAMETER_NAME>``) is read last.
* **Flags** always win. ``langgraph-migrator config show`` prints the result.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from migrator.errors import ConfigError

ENV_PREFIX = "LANGGRAPH_MIGRATOR"
TOOL_TABLE = "langgraph-migrator"
NOT_FLAG_SOURCES = frozenset({"policy", "app"})
"""Sub-tables of ``[tool.langgraph-migrator]`` that configure something else."""

_ENV_MARK = "_lgm_envvars"
_META_TABLE = "langgraph_migrator.tool_table"


def find_pyproject(start: Path | None = None) -> Path | None:
    """The ``pyproject.toml`` of the working directory (or ``start``), if there is one."""
    path = (start or Path.cwd()) / "pyproject.toml"
    return path if path.is_file() else None


def load_tool_table(path: Path | None) -> dict[str, Any]:
    """``[tool.langgraph-migrator]`` of ``path`` (empty when absent).

    Raises:
        ConfigError: The file is not valid TOML or the table is not a table.
    """
    if path is None:
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path.name}: cannot read [tool.{TOOL_TABLE}]: {exc}",
            hint="fix the TOML syntax (python -c 'import tomllib' can check it)",
        ) from exc
    tool = doc.get("tool", {})
    table = tool.get(TOOL_TABLE, {}) if isinstance(tool, Mapping) else {}
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{path.name}: [tool.{TOOL_TABLE}] must be a table.",
            hint=f'write [tool.{TOOL_TABLE}.upgrade-check] and from = "..." under it',
        )
    return dict(table)


def flag_name(option: click.Option) -> str:
    """The option's long flag without dashes (``--threads-from`` → ``threads-from``)."""
    longs = [o for o in option.opts if o.startswith("--")]
    return (longs[0] if longs else option.opts[0]).lstrip("-")


def _env_part(text: str) -> str:
    return text.upper().replace("-", "_")


def envvar_names(path: tuple[str, ...], option: click.Option) -> list[str]:
    """Environment variables read for ``option`` of the command at ``path``, in order."""
    flag = _env_part(flag_name(option))
    names = [f"{ENV_PREFIX}_{'_'.join(_env_part(p) for p in path)}_{flag}"]
    if not option.is_flag:
        names.append(f"{ENV_PREFIX}_{flag}")
    return names


def iter_commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command under ``group`` with its name path, depth first."""
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from iter_commands(command, (*path, name))
        else:
            yield (*path, name), command


def _options(command: click.Command) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option) and p.name and p.expose_value and not p.hidden
    ]


def attach_envvars(group: click.Group) -> None:
    """Give every option of every command its ``LANGGRAPH_MIGRATOR_*`` names (idempotent).

    Options that already name their own ``envvar`` keep it.
    """
    for path, command in iter_commands(group):
        for option in _options(command):
            if option.envvar is None or getattr(option, _ENV_MARK, False):
                option.envvar = envvar_names(path, option)
                setattr(option, _ENV_MARK, True)


def _keys_for(option: click.Option) -> set[str]:
    # Not the parameter name: ``--canary`` is stored as ``canaries``, like ``--canaries``'s flag.
    flag = flag_name(option)
    return {flag, flag.replace("-", "_")}


def _checked_value(
    command: click.Command, option: click.Option, key: str, value: Any, where: str
) -> Any:
    """``value`` when ``option`` accepts it; else an error naming the file and key."""
    try:
        option.type_cast_value(click.Context(command), value)
    except (click.BadParameter, TypeError, ValueError) as exc:
        why = exc.format_message() if isinstance(exc, click.BadParameter) else str(exc)
        raise ConfigError(
            f"{where}: {key} = {value!r} is not valid: {why}",
            hint=f"give {key} the type --{flag_name(option)} takes, or remove it",
        ) from None
    return value


def _command_defaults(
    path: tuple[str, ...],
    command: click.Command,
    top: Mapping[str, Any],
    own: Mapping[str, Any],
    origin: str = "pyproject.toml",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    options = _options(command)
    tables = (f"[tool.{TOOL_TABLE}]", f"[tool.{TOOL_TABLE}.{'.'.join(path)}]")
    for table, source in zip(tables, (top, own), strict=True):  # own wins over top-level
        for option in options:
            for key in _keys_for(option):
                if key in source and not isinstance(source[key], Mapping):
                    assert option.name is not None
                    where = f"{origin} {table}"
                    out[option.name] = _checked_value(command, option, key, source[key], where)
    unknown = sorted(k for k in own if not any(k in _keys_for(o) for o in options))
    if unknown:
        where = ".".join(path)
        known = ", ".join(sorted(flag_name(o) for o in options))
        raise ConfigError(
            f"[tool.{TOOL_TABLE}.{where}]: unknown key(s) {', '.join(unknown)}.",
            hint=f"`{' '.join(path)}` takes: {known}",
        )
    return out


def _subtable(table: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    node: Any = table
    for part in path:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"[tool.{TOOL_TABLE}] key {'.'.join(path)!r} must be a table.")
    return node


def build_default_map(
    group: click.Group, table: Mapping[str, Any], origin: str = "pyproject.toml"
) -> dict[str, Any]:
    """click's ``default_map`` for ``group`` from a ``[tool.langgraph-migrator]`` table.

    Args:
        group: The root command group.
        table: The tool table (``load_tool_table``).
        origin: The file it came from, for messages.

    Returns:
        Nested dicts keyed by command name, then parameter name.

    Raises:
        ConfigError: A key names no command or no option of its command, or holds a
            value of the wrong type (the message names ``origin`` and the key).
    """
    top = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    commands = list(iter_commands(group))
    all_keys = {k for _, c in commands for o in _options(c) for k in _keys_for(o)}
    unknown_top = sorted(k for k in top if k not in all_keys)
    if unknown_top:
        raise ConfigError(
            f"[tool.{TOOL_TABLE}]: no command has an option {', '.join(unknown_top)}.",
            hint="keys are long flag names without dashes, e.g. from = ... or pg = ...",
        )
    prefixes = {p[:i] for p, _ in commands for i in range(1, len(p) + 1)}
    for key, value in table.items():
        if isinstance(value, Mapping) and key not in NOT_FLAG_SOURCES:
            _check_tables(key, value, (key,), prefixes)
    default_map: dict[str, Any] = {}
    for path, command in commands:
        values = _command_defaults(path, command, top, _subtable(table, path), origin)
        if values:
            node = default_map
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = values
    return default_map


def _check_tables(
    key: str, value: Mapping[str, Any], path: tuple[str, ...], prefixes: set[tuple[str, ...]]
) -> None:
    if path not in prefixes:
        names = sorted({" ".join(p) for p in prefixes})
        raise ConfigError(
            f"[tool.{TOOL_TABLE}.{'.'.join(path)}]: there is no command {' '.join(path)!r}.",
            hint=f"commands: {', '.join(names)}",
        )
    for sub, inner in value.items():
        if isinstance(inner, Mapping):
            _check_tables(sub, inner, (*path, sub), prefixes)


def configure_context(ctx: click.Context, pyproject: Path | None = None) -> None:
    """Wire the precedence into the root context (called from the group callback).

    Sets every option's environment variable names, the ``auto_envvar_prefix`` and a
    ``default_map`` from the pyproject table, so that subcommands resolve
    flag > env > file > default with click's own machinery.
    """
    group = ctx.command
    assert isinstance(group, click.Group)
    attach_envvars(group)
    ctx.auto_envvar_prefix = ENV_PREFIX
    path = pyproject if pyproject is not None else find_pyproject()
    table = load_tool_table(path)
    file_map = build_default_map(group, table, str(path) if path else "pyproject.toml")
    ctx.default_map = _merge(file_map, dict(ctx.default_map or {}))
    ctx.meta[_META_TABLE] = table


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class EffectiveOption:
    """One option's resolved value and where it came from."""

    command: str
    option: str
    value: Any
    source: str  # flag | env | file | default
    origin: str | None  # the env var or the file key that supplied it

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "command": self.command,
            "option": self.option,
            "value": self.value,
            "source": self.source,
            "origin": self.origin,
        }


_SOURCES = {
    click.core.ParameterSource.COMMANDLINE: "flag",
    click.core.ParameterSource.ENVIRONMENT: "env",
    click.core.ParameterSource.DEFAULT_MAP: "file",
    click.core.ParameterSource.DEFAULT: "default",
}


def _masked(value: Any) -> Any:
    from migrator.postgres import redact_dsn

    if isinstance(value, str):
        return redact_dsn(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def effective_options(
    root: click.Context, path: tuple[str, ...], args: list[str] | None = None
) -> list[EffectiveOption]:
    """Resolve the options of the command at ``path`` as a real invocation would.

    Args:
        root: The root context, already configured (``configure_context``).
        path: The command's name path, e.g. ``("upgrade-check",)``.
        args: Flags given on the command line for that command (optional).

    Returns:
        One entry per option; string values pass through ``redact_dsn``.

    Raises:
        ConfigError: ``path`` names no command.
    """
    import os

    parent = root
    command: click.Command = root.command
    contexts = []
    for part in path:
        sub = command.commands.get(part) if isinstance(command, click.Group) else None
        if sub is None:
            raise ConfigError(
                f"config show: there is no command {' '.join(path)!r}.",
                hint="run `langgraph-migrator --help` for the list",
            )
        parent = sub.make_context(
            part,
            list(args or []) if part == path[-1] else [],
            parent=parent,
            resilient_parsing=True,
        )
        contexts.append(parent)
        command = sub
    ctx = parent
    out = []
    file_keys = ctx.default_map or {}
    for option in _options(command):
        assert option.name is not None
        raw = ctx.get_parameter_source(option.name)
        source = _SOURCES.get(raw, "default") if raw is not None else "default"
        origin: str | None = None
        if source == "env":
            names = (
                list(option.envvar or []) if not isinstance(option.envvar, str) else [option.envvar]
            )
            names.append(f"{ctx.auto_envvar_prefix}_{option.name.upper()}")
            origin = next((n for n in names if os.environ.get(n)), None)
        elif source == "file" and option.name in file_keys:
            own = _subtable(root.meta.get(_META_TABLE, {}), path)
            where = "." + ".".join(path) if _keys_for(option) & set(own) else ""
            origin = f"pyproject.toml [tool.{TOOL_TABLE}{where}] {flag_name(option)}"
        out.append(
            EffectiveOption(
                command=" ".join(path),
                option=f"--{flag_name(option)}",
                value=_masked(ctx.params.get(option.name)),
                source=source,
                origin=origin,
            )
        )
    for c in reversed(contexts):
        c.close()
    return _with_app_table(out, ctx.params, command)


def _with_app_table(
    rows: list[EffectiveOption], params: dict[str, Any], command: click.Command
) -> list[EffectiveOption]:
    """The app flags as the command resolves them, ``[tool.langgraph-migrator.app]`` included.

    The app table is read by :func:`migrator.app.profile.load_profile`, not by
    click's default map, so click alone reports its keys as defaults.
    """
    from migrator.app.profile import FLAG_KEYS, setting_origins

    rows = _with_allow_types(rows)
    names = {f"--{flag_name(o)}": o.name for o in _options(command) if o.name in FLAG_KEYS}
    if not names:
        return rows
    origins = setting_origins({name: params.get(name) for name in FLAG_KEYS})
    out = []
    for row in rows:
        name = names.get(row.option)
        if name is None or row.source == "env":
            out.append(row)
            continue
        got = origins[name]
        out.append(
            EffectiveOption(row.command, row.option, _masked(got.value), got.source, got.origin)
        )
    return out


def _with_allow_types(rows: list[EffectiveOption]) -> list[EffectiveOption]:
    """``--allow-type`` with the app profile's ``allow_types`` added, as ``restore`` uses it."""
    if not any(row.option == "--allow-type" for row in rows):
        return rows
    from migrator.app.profile import describe_key, load_profile

    profile = load_profile()
    if not profile.allow_types:
        return rows
    out = []
    for row in rows:
        if row.option != "--allow-type":
            out.append(row)
            continue
        given = list(row.value or []) if row.source != "default" else []
        origin = describe_key(profile.source, "allow_types")
        if given:
            origin = f"{row.source} ({row.origin or row.option}), plus {origin}"
        value = given + list(profile.allow_types)
        out.append(EffectiveOption(row.command, row.option, value, "file", origin))
    return out


def resolve_show(root: click.Context, words: list[str]) -> list[EffectiveOption]:
    """What ``config show [COMMAND ...] [FLAGS...]`` prints.

    Args:
        root: The configured root context.
        words: Command names (a leaf, a group, or none for all), then that command's flags.

    Returns:
        Effective options of every leaf command selected.

    Raises:
        ConfigError: The words name no command.
    """
    group = root.command
    assert isinstance(group, click.Group)
    path: tuple[str, ...] = ()
    node: click.Command = group
    rest = list(words)
    while rest and isinstance(node, click.Group) and not rest[0].startswith("-"):
        sub = node.commands.get(rest[0])
        if sub is None:
            raise ConfigError(
                f"config show: there is no command {' '.join((*path, rest[0]))!r}.",
                hint="run `langgraph-migrator --help` for the list",
            )
        path, node, rest = (*path, rest.pop(0)), sub, rest
    if isinstance(node, click.Group):
        if rest:
            raise ConfigError(
                "config show: flags need a command.",
                hint="e.g. langgraph-migrator config show upgrade-check --from SPEC",
            )
        leaves = [(path + p, c) for p, c in iter_commands(node)]
        return [row for p, _ in leaves for row in effective_options(root, p)]
    return effective_options(root, path, rest)


def render_effective(rows: list[EffectiveOption], *, as_json: bool = False) -> str:
    """Rows as aligned text (``command option value source origin``) or JSON."""
    import json

    if as_json:
        return json.dumps([r.to_dict() for r in rows], indent=2, default=str)
    table = [("command", "option", "value", "source", "from")]
    for r in rows:
        value = "" if r.value is None else json.dumps(r.value, default=str)
        table.append((r.command, r.option, value, r.source, r.origin or ""))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
        for row in table
    )
