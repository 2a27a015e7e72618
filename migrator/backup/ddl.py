"""The checkpoint tables' DDL of a backup: recognised, regenerated, never run as text.

A backup records each table's DDL as text (``migrator.fixtures.table_ddl``), and the
manifest's ``manifest_sha256`` is a checksum, not a signature: anyone who can edit
the manifest can reseal it. So ``restore-backup`` never executes that text (safety
rule: no SQL from a file). :func:`parse_table_ddl` recognises only what
``table_ddl`` writes for a plain table -- columns of built-in types with constant
defaults, ``PRIMARY KEY``/``UNIQUE`` constraints over columns, indexes over plain
columns with a stock access method -- renders what it understood back into the text
``table_ddl`` would record, and refuses (:class:`DdlRefused`) a statement that does
not parse, does not belong to the table, or does not render back byte for byte.
:meth:`TableDdl.statements` is what the restore executes: composed here with
``psycopg.sql`` from the recognised parts, identifiers quoted by psycopg, and types,
defaults, constraint kinds and access methods taken from this module's own lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from migrator.errors import ConfigError

#: Column types (``format_type`` spelling) a checkpoint table may have.
TYPES = frozenset(
    {
        "bigint",
        "boolean",
        "bytea",
        "character",
        "character varying",
        "date",
        "double precision",
        "integer",
        "json",
        "jsonb",
        "numeric",
        "real",
        "smallint",
        "text",
        "timestamp with time zone",
        "timestamp without time zone",
        "uuid",
    }
)
#: Types that take a length, ``character varying(64)``.
_SIZED = frozenset({"character", "character varying"})
#: Defaults that are not a literal: the text ``pg_get_expr`` shows, and what is run.
_KEYWORDS = {
    "true": sql.SQL("true"),
    "false": sql.SQL("false"),
    "now()": sql.SQL("now()"),
    "CURRENT_TIMESTAMP": sql.SQL("CURRENT_TIMESTAMP"),
}
_CONSTRAINTS = {"PRIMARY KEY": sql.SQL("PRIMARY KEY"), "UNIQUE": sql.SQL("UNIQUE")}
_METHODS = {m: sql.SQL(m) for m in ("btree", "hash", "gin", "gist", "brin")}

_QUOTED = r'"(?:[^"]|"")+"'
_BARE = r"[a-z_][a-z0-9_]*"
_IDENT = rf"(?:{_QUOTED}|{_BARE})"
_TYPE = r"[a-z][a-z ]*[a-z](?:\([1-9][0-9]{0,4}\))?(?:\[\])?"

_TYPE_RE = re.compile(
    r"(?P<base>[a-z][a-z ]*[a-z])(?:\((?P<size>[1-9][0-9]{0,4})\))?(?P<arr>\[\])?"
)
_LITERAL_RE = re.compile(rf"'(?P<lit>(?:[^'\\\r\n]|'')*)'::(?P<type>{_TYPE})")
_NUMBER_RE = re.compile(r"-?[0-9]{1,18}")
_CREATE_RE = re.compile(rf"CREATE TABLE (?P<table>{_QUOTED}) \(\n  (?P<body>.+)\n\)", re.S)
_COLUMN_RE = re.compile(
    rf"(?P<name>{_QUOTED}) (?P<type>{_TYPE})(?: DEFAULT (?P<default>.+?))?(?P<nn> NOT NULL)?"
)
_CONSTRAINT_RE = re.compile(
    rf"CONSTRAINT (?P<name>{_QUOTED}) (?P<kind>PRIMARY KEY|UNIQUE) \((?P<cols>[^\n]+)\)"
)
_INDEX_RE = re.compile(
    rf"CREATE (?P<unique>UNIQUE )?INDEX (?P<name>{_IDENT}) ON (?P<table>{_QUOTED})"
    r" USING (?P<method>[a-z]+) \((?P<cols>[^\n]+)\)"
)
_LIST_ITEM_RE = re.compile(rf"({_IDENT})(?:, |\Z)")


class DdlRefused(ValueError):
    """A recorded DDL statement is not one the tool writes; it is never executed."""


@dataclass(frozen=True)
class Name:
    """An identifier, and whether the recorded text quoted it."""

    value: str
    quoted: bool

    @classmethod
    def parse(cls, token: str) -> Name:
        if token.startswith('"'):
            return cls(token[1:-1].replace('""', '"'), True)
        return cls(token, False)

    def text(self) -> str:
        return _quote(self.value) if self.quoted else self.value


@dataclass(frozen=True)
class ColumnType:
    base: str  # a member of TYPES
    size: int | None = None
    array: bool = False

    @classmethod
    def parse(cls, text: str) -> ColumnType:
        match = _TYPE_RE.fullmatch(text)
        if not match or match["base"] not in TYPES:
            raise DdlRefused(f"type {text!r} is not one of the built-in types it knows")
        size = int(match["size"]) if match["size"] else None
        if size is not None and match["base"] not in _SIZED:
            raise DdlRefused(f"type {text!r} takes no length")
        return cls(match["base"], size, bool(match["arr"]))

    def text(self) -> str:
        size = "" if self.size is None else f"({self.size})"
        return f"{self.base}{size}{'[]' if self.array else ''}"

    def sql(self) -> sql.Composable:
        if self.base not in TYPES:
            raise DdlRefused(f"type {self.base!r} is not one of the built-in types it knows")
        out: sql.Composable = sql.SQL(self.base)
        if self.size is not None:
            out = sql.SQL("{}({})").format(out, sql.Literal(int(self.size)))
        return sql.SQL("{}[]").format(out) if self.array else out


@dataclass(frozen=True)
class Default:
    """A constant default: a cast literal, an integer, or a known keyword."""

    kind: str  # "literal" | "number" | "keyword"
    value: str
    cast: ColumnType | None = None

    @classmethod
    def parse(cls, text: str) -> Default:
        if text in _KEYWORDS:
            return cls("keyword", text)
        if _NUMBER_RE.fullmatch(text):
            return cls("number", text)
        match = _LITERAL_RE.fullmatch(text)
        if match:
            return cls("literal", match["lit"].replace("''", "'"), ColumnType.parse(match["type"]))
        raise DdlRefused(f"default {text!r} is not a constant it knows")

    def text(self) -> str:
        if self.kind == "literal" and self.cast is not None:
            return "'" + self.value.replace("'", "''") + "'::" + self.cast.text()
        return self.value

    def sql(self) -> sql.Composable:
        if self.kind == "keyword":
            return _KEYWORDS[self.value]
        if self.kind == "number":
            return sql.Literal(int(self.value))
        assert self.cast is not None
        return sql.SQL("{}::{}").format(sql.Literal(self.value), self.cast.sql())


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    default: Default | None
    not_null: bool

    def text(self) -> str:
        default = "" if self.default is None else f" DEFAULT {self.default.text()}"
        not_null = " NOT NULL" if self.not_null else ""
        return f"{_quote(self.name)} {self.type.text()}{default}{not_null}"

    def sql(self) -> sql.Composable:
        parts: list[sql.Composable] = [sql.Identifier(self.name), sql.SQL(" "), self.type.sql()]
        if self.default is not None:
            parts += [sql.SQL(" DEFAULT "), self.default.sql()]
        if self.not_null:
            parts.append(sql.SQL(" NOT NULL"))
        return sql.Composed(parts)


@dataclass(frozen=True)
class Constraint:
    name: str
    kind: str  # a key of _CONSTRAINTS
    columns: tuple[Name, ...]

    def text(self) -> str:
        return f"CONSTRAINT {_quote(self.name)} {self.kind} ({_names_text(self.columns)})"

    def sql(self) -> sql.Composable:
        return sql.SQL("CONSTRAINT {} {} ({})").format(
            sql.Identifier(self.name), _CONSTRAINTS[self.kind], _names_sql(self.columns)
        )


@dataclass(frozen=True)
class Index:
    name: Name
    unique: bool
    method: str  # a key of _METHODS
    columns: tuple[Name, ...]

    def text(self, table: str) -> str:
        return (
            f"CREATE {'UNIQUE ' if self.unique else ''}INDEX {self.name.text()} "
            f"ON {_quote(table)} USING {self.method} ({_names_text(self.columns)})"
        )

    def sql(self, table: str) -> sql.Composed:
        return sql.SQL("CREATE {}INDEX {} ON {} USING {} ({})").format(
            sql.SQL("UNIQUE " if self.unique else ""),
            sql.Identifier(self.name.value),
            sql.Identifier(table),
            _METHODS[self.method],
            _names_sql(self.columns),
        )


@dataclass(frozen=True)
class TableDdl:
    """One checkpoint table as the tool understood it from the recorded DDL."""

    name: str
    columns: tuple[Column, ...]
    constraints: tuple[Constraint, ...]
    indexes: tuple[Index, ...]

    def text(self) -> tuple[str, ...]:
        """The DDL ``table_ddl`` records for this table: CREATE TABLE, then indexes."""
        items = [c.text() for c in self.columns] + [c.text() for c in self.constraints]
        create = f"CREATE TABLE {_quote(self.name)} (\n  " + ",\n  ".join(items) + "\n)"
        return (create, *(i.text(self.name) for i in self.indexes))

    def create_table(self) -> sql.Composed:
        """CREATE TABLE (unqualified: runs under the restore's search_path)."""
        items = [c.sql() for c in self.columns] + [c.sql() for c in self.constraints]
        return sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(self.name), sql.SQL(", ").join(items)
        )

    def create_indexes(self) -> tuple[sql.Composed, ...]:
        """The secondary indexes, built after the load."""
        return tuple(i.sql(self.name) for i in self.indexes)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _names_text(names: Sequence[Name]) -> str:
    return ", ".join(n.text() for n in names)


def _names_sql(names: Sequence[Name]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n.value) for n in names)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 120 else flat[:117] + "..."


def _names(text: str, columns: set[str]) -> tuple[Name, ...]:
    out: list[Name] = []
    pos = 0
    while pos < len(text):
        match = _LIST_ITEM_RE.match(text, pos)
        if not match:
            raise DdlRefused(f"{text!r} is not a list of column names")
        out.append(Name.parse(match[1]))
        pos = match.end()
    unknown = [n.value for n in out if n.value not in columns]
    if not out or unknown:
        raise DdlRefused(f"{text!r} names no column, or a column the table lacks: {unknown}")
    return tuple(out)


def _parse_create(table: str, statement: str) -> tuple[list[Column], list[Constraint]]:
    match = _CREATE_RE.fullmatch(statement)
    if not match:
        raise DdlRefused("not a CREATE TABLE the tool writes")
    if Name.parse(match["table"]).value != table:
        raise DdlRefused(f"creates {match['table']}, not {table}")
    columns: list[Column] = []
    constraints: list[Constraint] = []
    for item in match["body"].split(",\n  "):
        if col := _COLUMN_RE.fullmatch(item):
            if constraints:
                raise DdlRefused("a column after the constraints")
            default = None if col["default"] is None else Default.parse(col["default"])
            name = Name.parse(col["name"]).value
            columns.append(Column(name, ColumnType.parse(col["type"]), default, bool(col["nn"])))
        elif con := _CONSTRAINT_RE.fullmatch(item):
            names = _names(con["cols"], {c.name for c in columns})
            constraints.append(Constraint(Name.parse(con["name"]).value, con["kind"], names))
        else:
            raise DdlRefused(f"{_short(item)!r} is not a column or key it knows")
    if len({c.name for c in columns}) != len(columns):
        raise DdlRefused("a column is defined twice")
    return columns, constraints


def _parse_index(table: str, statement: str, columns: set[str]) -> Index:
    match = _INDEX_RE.fullmatch(statement)
    if not match:
        raise DdlRefused("not a CREATE INDEX over plain columns the tool writes")
    if Name.parse(match["table"]).value != table:
        raise DdlRefused(f"indexes {match['table']}, not {table}")
    if match["method"] not in _METHODS:
        raise DdlRefused(f"index method {match['method']!r} is not one it knows")
    names = _names(match["cols"], columns)
    return Index(Name.parse(match["name"]), bool(match["unique"]), match["method"], names)


def parse_table_ddl(table: str, ddl: Sequence[str]) -> TableDdl:
    """Recognise the recorded DDL of checkpoint table ``table``.

    Args:
        table: The table the manifest lists (one of the checkpoint tables).
        ddl: Its recorded statements: CREATE TABLE, then its secondary indexes.

    Returns:
        What the tool will create, which renders back into exactly ``ddl``.

    Raises:
        DdlRefused: A statement is not recognised, belongs to another table, or
            does not read back as the tool writes it; the message names it.
    """
    if not ddl:
        raise DdlRefused("no DDL recorded")
    columns: list[Column] = []
    constraints: list[Constraint] = []
    indexes: list[Index] = []
    for number, statement in enumerate(ddl, start=1):
        try:
            if number == 1:
                columns, constraints = _parse_create(table, statement)
            else:
                indexes.append(_parse_index(table, statement, {c.name for c in columns}))
        except DdlRefused as exc:
            raise DdlRefused(
                f"DDL statement {number} `{_short(statement)}` refused: {exc}"
            ) from None
    spec = TableDdl(table, tuple(columns), tuple(constraints), tuple(indexes))
    for number, (ours, recorded) in enumerate(zip(spec.text(), ddl, strict=True), start=1):
        if ours != recorded:
            raise DdlRefused(
                f"DDL statement {number} `{_short(recorded)}` refused: it differs from "
                f"what the tool generates, `{_short(ours)}`"
            )
    return spec


def check_restorable(schema: str, table: str, ddl: Sequence[str]) -> None:
    """At backup time: refuse a checkpoint table whose DDL restore-backup would refuse.

    Raises:
        ConfigError: Names the table and the statement, before any file is written.
    """
    try:
        parse_table_ddl(table, ddl)
    except DdlRefused as exc:
        raise ConfigError(
            f"{schema}.{table} has DDL restore-backup would not recreate: {exc}; "
            "no backup was written.",
            hint="restore-backup recreates plain columns, primary keys, unique constraints "
            "and plain column indexes (what setup() creates); drop the extra object "
            "or back up with pg_dump.",
        ) from None
