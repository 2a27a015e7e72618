"""The application profile: what the tool must know of the user's app.

Declared once in ``[tool.langgraph-migrator.app]`` of the app's ``pyproject.toml``
(found from the working directory upward), overridden by flags
(``--app-path``, ``--graph``, ``--serde``, ``--thread-graph``) and their
``LANGGRAPH_MIGRATOR_*`` environment variables. Every worker op of a run, in
every version environment, receives it (:meth:`AppProfile.worker_env`) and
loads it (:mod:`migrator.worker.app`). Reading never runs one of the app's
nodes; only an explicit resume does.

Keys::

    [tool.langgraph-migrator.app]
    paths = ["src"]                      # import roots, relative to this file
    graphs = { orders = "shop.graphs:build_orders" }
    serde = "shop.persistence:make_serde"    # optional
    thread_graph = "shop.routing:graph_of"   # optional f(thread_id, metadata)
    requirements = ["pydantic>=2"]       # or "requirements-app.txt"
    key_env = "LANGGRAPH_AES_KEY"        # optional: the variable an encrypting serde reads
    allow_types = ["shop.models.Order"]  # optional: classes `restore` may rebuild

``key_env`` names the environment variable the app's encrypting serializer takes
its key from (``docs/encrypted-checkpoints.md``): commands check it is set before
they start, and a key that does not decrypt the stored rows is reported naming it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError

APP_TABLE = "app"
WORKER_ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_APP"
_KEYS = frozenset(
    {"paths", "graphs", "serde", "thread_graph", "requirements", "key_env", "allow_types"}
)
#: Worker environment variable naming ``key_env`` (:mod:`migrator.worker.cipher`).
WORKER_KEY_ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_KEY_ENV"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_GRAPH_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CLASS = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


@dataclass(frozen=True)
class AppProfile:
    """The user's application as every worker op sees it.

    Attributes:
        source: The pyproject.toml it came from (None: flags only).
        paths: Import roots (absolute), put first on the workers' ``sys.path``.
        graphs: Graph name -> ``module:attr`` (a compiled graph, a ``StateGraph``
            or a function taking a checkpointer).
        serde: ``module:factory`` returning the app's serializer, or None.
        thread_graph: ``module:function`` mapping (thread_id, metadata) to a
            graph name, or None.
        requirements: The app's own packages, installed into version
            environments built from a bare spec.
        key_env: The environment variable the app's encrypting serializer
            reads its key from, or None.
        allow_types: The app's own classes (``module.Qualname``) a ``restore`` may
            rebuild from a dump, added to ``--allow-type`` (exact names only).
    """

    source: Path | None = None
    paths: tuple[Path, ...] = ()
    graphs: Mapping[str, str] = field(default_factory=dict)
    serde: str | None = None
    thread_graph: str | None = None
    requirements: tuple[str, ...] = ()
    key_env: str | None = None
    allow_types: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No code of the app to load."""
        return not (self.paths or self.graphs or self.serde or self.thread_graph)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the workers receive, plus where it came from)."""
        return {
            "source": str(self.source) if self.source else None,
            "paths": [str(p) for p in self.paths],
            "graphs": dict(self.graphs),
            "serde": self.serde,
            "thread_graph": self.thread_graph,
            "requirements": list(self.requirements),
            "key_env": self.key_env,
            "allow_types": list(self.allow_types),
        }

    def worker_env(self) -> dict[str, str]:
        """The environment variable that carries the profile to a worker."""
        if self.empty:
            return {}
        skip = ("source", "requirements", "key_env", "allow_types")
        data = {k: v for k, v in self.to_dict().items() if k not in skip}
        out = {WORKER_ENV_VAR: json.dumps(data, sort_keys=True)}
        if self.key_env:
            out[WORKER_KEY_ENV_VAR] = self.key_env
        return out

    def check_key_env(self) -> None:
        """Raise when the app's key variable is named but not set (before any worker runs).

        Raises:
            ConfigError: ``key_env`` is not set in this environment (exit 2).
        """
        if self.key_env and not os.environ.get(self.key_env):
            raise ConfigError(
                f"the app's serializer takes its key from {self.key_env}, which is not set.",
                hint=f"export {self.key_env} with the key the checkpoints were written with",
            )

    def describe(self) -> str:
        """One line for progress output and reports."""
        where = self.source.name if self.source else "flags"
        graphs = ", ".join(sorted(self.graphs)) or "no graphs"
        return f"app profile from {where}: {graphs}" + (
            f", serde {self.serde}" if self.serde else ""
        )


def find_app_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (default: cwd) upward with an app table."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _app_table(candidate) is not None:
            return candidate
    return None


def _app_table(path: Path) -> dict[str, Any] | None:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path.name}: cannot read [tool.langgraph-migrator.{APP_TABLE}]: {exc}",
            hint="fix the TOML syntax",
        ) from exc
    tool = doc.get("tool")
    table = tool.get("langgraph-migrator") if isinstance(tool, dict) else None
    app = table.get(APP_TABLE) if isinstance(table, dict) else None
    if app is None:
        return None
    if not isinstance(app, dict):
        raise ConfigError(
            f"{path}: [tool.langgraph-migrator.{APP_TABLE}] must be a table.",
            hint='write paths = ["src"] and graphs = { name = "module:attr" } under it',
        )
    return app


def _where(path: Path | None, key: str) -> str:
    return f"{path.name} [tool.langgraph-migrator.{APP_TABLE}] {key}" if path else key


def describe_key(path: Path | None, key: str) -> str:
    """Where an app-table key lives, for messages (``pyproject.toml [tool.…app] key``)."""
    return _where(path, key)


def _spec(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SPEC.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not module:attr.", hint="e.g. shop.graphs:build_orders"
        )
    return value


def parse_graph_flags(values: Iterable[str]) -> dict[str, str]:
    """``--graph NAME=MODULE:ATTR`` values (a bare ``MODULE:ATTR`` is named by its attr).

    Raises:
        ConfigError: a value that is neither form, or a name given twice.
    """
    graphs: dict[str, str] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep:
            name, spec = value.rpartition(":")[2].rpartition(".")[2], value
        if not _GRAPH_NAME.match(name):
            raise ConfigError(
                f"--graph {value!r}: bad graph name.", hint="--graph NAME=MODULE:ATTR"
            )
        if name in graphs:
            raise ConfigError(f"--graph names {name!r} twice.", hint="one --graph per graph name")
        graphs[name] = _spec(spec, f"--graph {value!r}")
    return graphs


def _paths(value: Any, base: Path, where: str) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{where}: must be a list of directories.", hint='paths = ["src"]')
    out = []
    for text in value:
        path = (base / text).resolve()
        if not path.is_dir():
            raise ConfigError(f"{where}: {text!r} is not a directory.", hint="fix the path")
        out.append(path)
    return tuple(out)


def _requirements(value: Any, base: Path, where: str) -> tuple[str, ...]:
    if isinstance(value, str):  # a file, one requirement per line
        file = base / value
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {value}: {exc.strerror}.") from exc
        value = [ln.split("#", 1)[0].strip() for ln in lines]
        value = [ln for ln in value if ln]
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ConfigError(f"{where}: must be a list or a file name.", hint='["pydantic>=2"]')
    for req in value:
        if req.startswith("-") or not re.match(
            r"^[A-Za-z0-9][A-Za-z0-9._\-\[\], <>=!~;'\"]*$", req
        ):
            raise ConfigError(
                f"{where}: {req!r} is not a requirement line this tool accepts.",
                hint="name packages with version specifiers only (no options, no URLs)",
            )
    return tuple(value)


def load_profile(
    start: Path | None = None,
    *,
    pyproject: Path | None = None,
    paths: Iterable[Path | str] = (),
    graphs: Iterable[str] = (),
    serde: str | None = None,
    thread_graph: str | None = None,
    key_env: str | None = None,
) -> AppProfile:
    """The app profile: the pyproject's table, with flags taking precedence.

    Args:
        start: Where to search upward for the pyproject (default: cwd).
        pyproject: Use this file instead of searching.
        paths: ``--app-path`` values (replace the file's ``paths``).
        graphs: ``--graph`` values (added to / replacing the file's graphs by name).
        serde: ``--serde``.
        thread_graph: ``--thread-graph``.
        key_env: ``--key-env``.

    Raises:
        ConfigError: an unknown key, a value of the wrong shape, a path that is
            not a directory (exit 2).
    """
    source = pyproject or find_app_pyproject(start)
    table = (_app_table(source) or {}) if source else {}
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{_where(source, unknown[0])}: unknown key.",
            hint=f"keys are {', '.join(sorted(_KEYS))}",
        )
    base = source.parent if source else Path.cwd()
    if "paths" in table:
        file_paths = _paths(table["paths"], base, _where(source, "paths"))
    elif source:
        default = [base, base / "src"]
        file_paths = tuple(p.resolve() for p in default if p.is_dir())
    else:
        file_paths = ()
    file_graphs = table.get("graphs") or {}
    if not isinstance(file_graphs, dict):
        raise ConfigError(
            f'{_where(source, "graphs")}: must be a table of name = "module:attr".',
            hint='graphs = { orders = "shop.graphs:build_orders" }',
        )
    merged = {str(k): _spec(v, _where(source, f"graphs.{k}")) for k, v in file_graphs.items()}
    merged.update(parse_graph_flags(graphs))
    flag_paths = tuple(Path(p).resolve() for p in paths)
    for p in flag_paths:
        if not p.is_dir():
            raise ConfigError(f"--app-path {p.name!r} is not a directory.", hint="fix the path")
    return AppProfile(
        source=source,
        paths=flag_paths or file_paths,
        graphs=merged,
        serde=_override(serde, "--serde", table, "serde", source),
        thread_graph=_override(thread_graph, "--thread-graph", table, "thread_graph", source),
        requirements=(
            _requirements(table["requirements"], base, _where(source, "requirements"))
            if "requirements" in table
            else ()
        ),
        key_env=_key_env(key_env, table, source),
        allow_types=_allow_types(table.get("allow_types", []), _where(source, "allow_types")),
    )


def _allow_types(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{where}: must be a list of class names.", hint='allow_types = ["shop.models.Order"]'
        )
    for name in value:
        if not _CLASS.match(name):
            raise ConfigError(
                f"{where}: {name!r} is not module.Qualname.",
                hint="name each class exactly, e.g. shop.models.Order (no wildcards)",
            )
    return tuple(dict.fromkeys(value))


def _key_env(flag: str | None, table: Mapping[str, Any], source: Path | None) -> str | None:
    value = flag or table.get("key_env")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ConfigError(
            f"{_where(source, 'key_env') if not flag else '--key-env'}: {value!r} is not "
            "an environment variable name.",
            hint='key_env = "LANGGRAPH_AES_KEY"',
        )
    return value


def _override(
    flag: str | None, flag_name: str, table: Mapping[str, Any], key: str, source: Path | None
) -> str | None:
    """A ``module:attr`` setting: the flag's value, else the file's (checked either way)."""
    if flag:
        return _spec(flag, flag_name)
    if table.get(key):
        return _spec(table[key], _where(source, key))
    return None


#: Click parameter name of an app flag -> its key in the app table.
FLAG_KEYS = {
    "app_paths": "paths",
    "app_graphs": "graphs",
    "app_serde": "serde",
    "app_thread_graph": "thread_graph",
    "app_key_env": "key_env",
}


@dataclass(frozen=True)
class SettingOrigin:
    """Where one app setting's effective value comes from (for ``config show``)."""

    value: Any
    source: str  # flag | file | default
    origin: str | None


def setting_origins(
    flags: Mapping[str, Any], start: Path | None = None
) -> dict[str, SettingOrigin]:
    """The effective app settings a command would run with, and where each came from.

    Args:
        flags: The command's app flag values by click parameter name (``app_graphs``, ...);
            empty or None when not given.
        start: Where to search upward for the pyproject (default: cwd).

    Returns:
        Click parameter name -> value and source. Paths are shown relative to the
        pyproject's directory (or the working directory) when inside it.

    Raises:
        ConfigError: as :func:`load_profile`.
    """
    profile = load_profile(
        start,
        paths=flags.get("app_paths") or (),
        graphs=flags.get("app_graphs") or (),
        serde=flags.get("app_serde"),
        thread_graph=flags.get("app_thread_graph"),
        key_env=flags.get("app_key_env"),
    )
    table = (_app_table(profile.source) or {}) if profile.source else {}
    base = profile.source.parent if profile.source else Path.cwd()

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(base)) or "."
        except ValueError:
            return str(path)

    values: dict[str, Any] = {
        "app_paths": [shown(p) for p in profile.paths],
        "app_graphs": [f"{k}={v}" for k, v in sorted(profile.graphs.items())],
        "app_serde": profile.serde,
        "app_thread_graph": profile.thread_graph,
        "app_key_env": profile.key_env,
    }
    out = {}
    for name, key in FLAG_KEYS.items():
        if flags.get(name):
            merged = key == "graphs" and key in table
            source = "flag"
            origin = f"merged with {_where(profile.source, key)}" if merged else None
        elif key in table or (key == "paths" and profile.source and profile.paths):
            source = "file"
            origin = _where(profile.source, key if key in table else "paths (default: . and src)")
        else:
            source, origin = "default", None
        out[name] = SettingOrigin(values[name], source, origin)
    return out


_ACTIVE: list[AppProfile] = []
_LOCK = threading.Lock()
#: id of an active profile -> the environments its code was found to import in.
_CHECKED: dict[int, set[str]] = {}


@contextmanager
def use_profile(profile: AppProfile | None) -> Iterator[None]:
    """Make ``profile`` the one every worker started meanwhile receives.

    Process-wide (not per thread), so workers started from a command's worker
    threads (``--jobs``) receive it too.
    """
    if profile is None:
        yield
        return
    with _LOCK:
        _ACTIVE.append(profile)
        _CHECKED.setdefault(id(profile), set())
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(profile)
            if not any(p is profile for p in _ACTIVE):
                _CHECKED.pop(id(profile), None)


def active_profile() -> AppProfile | None:
    """The profile of the command running now, or None."""
    with _LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


def checked_envs(profile: AppProfile) -> set[str]:
    """The environments (by interpreter) where the active ``profile``'s code was found to
    import during this command (:func:`migrator.envs.check_app`); a later command,
    with a profile of its own, checks again.

    Args:
        profile: The active profile (:func:`active_profile`).
    """
    with _LOCK:
        return _CHECKED.setdefault(id(profile), set())
