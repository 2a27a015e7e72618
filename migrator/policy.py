"""The user's drift policy: which differences to ignore or to accept as benign.

A policy lives in the project's ``pyproject.toml``::

    [tool.langgraph-migrator.policy]
    # Differences at these paths are reported as "ignored" and never fail the gate.
    ignore = ['threads["canary:large_state"].*']
    # Differences at these paths are reported as "benign" and never fail the gate.
    benign = ['threads[*].checkpoints[*].metadata.my_app_*']
    # Differences attributed to these hazard ids are ignored (e.g. a team that
    # never enables strict msgpack).
    hazards_ignore = ["H-STRICT-MSGPACK"]

or in a separate TOML file passed with ``--policy FILE``, with the same keys at the
top level (a file that has a ``[tool.langgraph-migrator.policy]`` table is read
from that table, so a pyproject.toml can be passed too).

Patterns are matched against the whole difference path (see ``migrator.compare``).
Only two characters are special: ``*`` matches any run of characters (dots and
brackets included) and ``?`` matches one character. Everything else, including
``[``, ``]`` and ``"``, matches itself, so a path copied from a report is a
pattern that matches exactly that difference.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from migrator.errors import ConfigError

POLICY_KEYS = ("ignore", "benign", "hazards_ignore")

_HAZARD_ID = re.compile(r"^H-[A-Z0-9][A-Z0-9.-]*$")


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = ["^"]
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    parts.append("$")
    return re.compile("".join(parts), re.DOTALL)


def match_path(pattern: str, path: str) -> bool:
    """Whether a policy pattern matches a difference path.

    Args:
        pattern: A path pattern; ``*`` matches any run of characters, ``?`` one character.
        path: A difference path such as ``threads["t"].checkpoints[ns="",id="1"].metadata``.

    Returns:
        True when the whole path matches.
    """
    return _compile(pattern).match(path) is not None


@dataclass(frozen=True)
class Policy:
    """A user's drift policy.

    Attributes:
        ignore: Path patterns whose differences are reported as ``ignored``.
        benign: Path patterns whose differences are downgraded to ``benign``.
        hazards_ignore: Hazard ids whose differences are reported as ``ignored``.
        source: Where the policy was read from (for reports), or None.
        accepted: Hazard ids the operator accepted for this run (``--accept-hazard``):
            their differences are reported as ``ignored``, naming the flag.
    """

    ignore: tuple[str, ...] = ()
    benign: tuple[str, ...] = ()
    hazards_ignore: tuple[str, ...] = ()
    source: str | None = None
    accepted: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the policy changes nothing."""
        return not (self.ignore or self.benign or self.hazards_ignore or self.accepted)

    def classify(
        self, path: str, hazard: str | None = None
    ) -> tuple[Literal["ignored", "benign"], str] | None:
        """The severity this policy assigns to a difference, if any.

        ``ignore`` wins over ``benign``; a hazard listed in ``hazards_ignore`` is ignored.

        Args:
            path: The difference path.
            hazard: The hazard id attributed to the difference, if any.

        Returns:
            ``(severity, rule)`` where rule names the matching entry
            (``policy:ignore:<pattern>``), or None when no entry matches.
        """
        for pattern in self.ignore:
            if match_path(pattern, path):
                return "ignored", f"policy:ignore:{pattern}"
        if hazard is not None and hazard in self.accepted:
            return "ignored", f"accepted:{hazard} (--accept-hazard)"
        if hazard is not None and hazard in self.hazards_ignore:
            return "ignored", f"policy:hazards_ignore:{hazard}"
        for pattern in self.benign:
            if match_path(pattern, path):
                return "benign", f"policy:benign:{pattern}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "ignore": list(self.ignore),
            "benign": list(self.benign),
            "hazards_ignore": list(self.hazards_ignore),
            "source": self.source,
            "accepted": list(self.accepted),
        }


def parse_policy(table: Mapping[str, Any], *, source: str = "policy") -> Policy:
    """Build a ``Policy`` from a parsed TOML table.

    Args:
        table: The ``[tool.langgraph-migrator.policy]`` table (or a policy file's top level).
        source: Names the file in error messages.

    Returns:
        The policy.

    Raises:
        ConfigError: An unknown key, or a value that is not a list of non-empty strings.
    """
    unknown = sorted(set(table) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown policy key(s) {', '.join(unknown)}.",
            hint=f"the keys are {', '.join(POLICY_KEYS)}",
        )
    values: dict[str, tuple[str, ...]] = {}
    for key in POLICY_KEYS:
        raw = table.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
            raise ConfigError(
                f"{source}: policy key {key!r} must be a list of non-empty strings, got {raw!r}."
            )
        values[key] = tuple(raw)
    bad = [h for h in values["hazards_ignore"] if not _HAZARD_ID.match(h)]
    if bad:
        raise ConfigError(
            f"{source}: hazards_ignore entries must be hazard ids such as H-STRICT-MSGPACK, "
            f"got {', '.join(repr(b) for b in bad)}."
        )
    return Policy(
        ignore=values["ignore"],
        benign=values["benign"],
        hazards_ignore=values["hazards_ignore"],
        source=source,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy file not found.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy file ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None


def _tool_policy(doc: Mapping[str, Any], source: str) -> Mapping[str, Any] | None:
    tool = doc.get("tool")
    if not isinstance(tool, Mapping) or "langgraph-migrator" not in tool:
        return None
    ours = tool["langgraph-migrator"]
    if not isinstance(ours, Mapping):
        raise ConfigError(f"{source}: [tool.langgraph-migrator] must be a table.")
    table = ours.get("policy", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [tool.langgraph-migrator.policy] must be a table.")
    return table


def load_policy(
    pyproject_path: str | Path | None = None, policy_file: str | Path | None = None
) -> Policy:
    """Read the user's policy.

    ``policy_file`` (``--policy FILE``) takes precedence: when it is given, the
    pyproject is not read. A pyproject without ``[tool.langgraph-migrator.policy]``
    gives an empty policy.

    Args:
        pyproject_path: A ``pyproject.toml`` to read ``[tool.langgraph-migrator.policy]`` from.
        policy_file: A TOML policy file (keys at the top level, or in the tool table).

    Returns:
        The policy; an empty one when neither path is given.

    Raises:
        ConfigError: A file is missing, unreadable, not TOML, or holds an invalid policy
            (one line naming the file and the problem; exit code 2).
    """
    if policy_file is not None:
        path = Path(policy_file)
        doc = _read_toml(path)
        table = _tool_policy(doc, str(path))
        return parse_policy(doc if table is None else table, source=str(path))
    if pyproject_path is not None:
        path = Path(pyproject_path)
        table = _tool_policy(_read_toml(path), str(path))
        return Policy(source=None) if table is None else parse_policy(table, source=str(path))
    return Policy()
