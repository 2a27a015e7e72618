# ruff: noqa: E501 - the catalogue is a table: one case per line
"""A catalogue of bad inputs, every command x its typical mistake (issue 12, DESIGN "Safety rules").

Each case runs ``migrator.cli.main`` in-process and asserts: the exit code, one
``error:`` line matching the case's message, no password anywhere in the output
(every DSN carries a recognisable fake one), and that the database is unchanged:
a hash of its catalog (``pg_class``/``pg_attribute``/``pg_index``, every
non-system schema) and of every table's rows, taken before and after.

One database (the 3.0.1 canary fixture, a backup and a dump of it, a role
without privileges) serves the whole module. ``test_bad_days.py``,
``test_no_password_in_output.py`` and ``test_upgrade_check_bad_input.py`` hold
other cases (DSN typos, damaged ledgers, bad disks, reseeding, upgrade-check);
this file does not repeat them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from migrator import fixtures
from migrator.cli import main
from migrator.lock import advisory_lock
from migrator.postgres import Server, scratch_database

pytestmark = [pytest.mark.timeout(600)]

PW = "Catal0gue-Pw-9f3"  # fake: the test server trusts loopback and ignores it
FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"
UNKNOWN = "langgraph-checkpoint-postgres==99.0.0"
#: The fixture's rich canary types: allowed, so that restore gets past its allowlist check.
ALLOW = [
    f"--allow-type=migrator.worker.canaries.rich.{name}"
    for name in ("CanaryColor", "CanaryModel", "CanaryRecord")
]

CATALOG_SQL = """
SELECT n.nspname, c.relname, c.relkind::text,
       coalesce((SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                 || ':' || a.attnotnull, ',' ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ''),
       coalesce((SELECT i.indisvalid::text || ' ' || pg_get_indexdef(i.indexrelid)
        FROM pg_index i WHERE i.indexrelid = c.oid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
ORDER BY 1, 2
"""
ROWS_SQL = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"


def db_state(dsn: str) -> dict[str, str]:
    """sha256 of the catalog, and count + md5 of every table's rows."""
    out: dict[str, str] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        catalog = conn.execute(CATALOG_SQL).fetchall()
        out["catalog"] = hashlib.sha256(repr(catalog).encode()).hexdigest()
        for schema, name, kind, _, _ in catalog:
            if kind in ("r", "p"):
                query = sql.SQL(ROWS_SQL).format(sql.Identifier(schema, name))
                out[f"{schema}.{name}"] = repr(conn.execute(query).fetchone())
    return out


def _dsn(dsn: str, **changes: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update(changes)
    info["password"] = PW
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


@dataclass
class Ctx:
    """What the cases point at (all under the module's scratch database)."""

    dsn: str  # the database, with the fake password
    raw: str  # the same, without a password (for the test's own checks)
    server: str  # the server's maintenance DSN, with the fake password
    noprivs: str  # the database as a role without any privilege
    backup: Path  # a good backup of the database
    dump: Path  # a good dump of the database
    tmp: Path = field(default_factory=Path)

    def down(self, **changes: str) -> str:
        """The database DSN on a port nobody listens on (or other changes)."""
        return _dsn(self.raw, **({"port": "1"} | changes))

    def copy_backup(self) -> Path:
        target = self.tmp / f"backup-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.backup, target)
        return target

    def copy_dump(self) -> Path:
        target = self.tmp / f"copy-{uuid.uuid4().hex[:6]}"
        target.mkdir()
        for f in self.dump.parent.iterdir():
            if f.name.startswith(self.dump.name):
                shutil.copy(f, target / f.name)
        return target / self.dump.name


def _main(args: list[str]) -> tuple[int, str, str]:
    with CliRunner().isolation() as streams:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()


@pytest.fixture(scope="module")
def ctx(pg_default: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    tmp = tmp_path_factory.mktemp("catalogue")
    role = f"lgm_noprivs_{uuid.uuid4().hex[:8]}"
    with scratch_database(pg_default) as raw:
        fixtures.import_tables(raw, FIXTURE)
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            dbname = conn.info.dbname
            conn.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname))
            )
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(role)
                )
            )
        dsn = _dsn(raw)
        backup = tmp / "good-backup"
        code, out, err = _main(["backup", "--dsn", dsn, "--out", str(backup), "-q"])
        assert code == 0, out + err
        dump = tmp / "dumps" / "good.lgdump"
        dump.parent.mkdir()
        code, out, err = _main(
            ["dump", "--dsn", dsn, "--from", "current", "--out", str(dump), "-q"]
        )
        assert code == 0, out + err
        try:
            yield Ctx(
                dsn=dsn,
                raw=raw,
                server=_dsn(pg_default.dsn),
                noprivs=_dsn(raw, user=role),
                backup=backup,
                dump=dump,
                tmp=tmp,
            )
        finally:
            with psycopg.connect(raw, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(pg_default.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# ----------------------------------------------------------------- file damage


def _flip_a_byte(backup: Path) -> Path:
    data = sorted(p for p in backup.iterdir() if p.name.startswith("checkpoints."))[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return backup


def _manifest_not_json(backup: Path) -> Path:
    (backup / "manifest.json").write_text("{ this is not json")
    return backup


def _drop_a_file(backup: Path) -> Path:
    sorted(p for p in backup.iterdir() if p.name.startswith("checkpoint_blobs."))[0].unlink()
    return backup


def _truncate(dump: Path) -> Path:
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    return dump


def _random_bytes(dump: Path) -> Path:
    dump.write_bytes(gzip.compress(b"\x00garbage" * 100))
    return dump


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / f"{uuid.uuid4().hex[:6]}-{name}"
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------- the catalogue

Args = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    args: Args
    code: int
    message: str  # a regex the error line must match
    xfail: str | None = None
    locked: bool = False  # another session holds the migrator lock during the case


# fmt: off
CASES: list[Case] = [
    # --- the server cannot be reached, or the database/role does not exist (exit 3)
    Case("plan/refused", lambda c: ["plan", "--dsn", c.down(), "-q"], 3, r"Connection refused"),
    Case("verify/no-database", lambda c: ["verify", "--dsn", c.down(port=_port(c), dbname="nope_db"), "-q"], 3, r"nope_db|does not exist"),
    Case("backup/no-role", lambda c: ["backup", "--dsn", c.down(port=_port(c), user="nobody_here"), "--out", str(c.tmp / "b-norole"), "-q"], 3, r"nobody_here|does not exist"),
    Case("dump/refused", lambda c: ["dump", "--dsn", c.down(), "--from", "current", "--out", str(c.tmp / "refused.lgdump"), "-q"], 3, r"Connection refused"),
    Case("restore/refused", lambda c: ["restore", "--dsn", c.down(), *ALLOW, str(c.dump), "-q"], 3, r"Connection refused"),
    Case("restore-backup/refused", lambda c: ["restore-backup", "--dsn", c.down(), str(c.backup), "-q"], 3, r"Connection refused"),
    Case("migrate/no-database", lambda c: ["migrate", "--dsn", c.down(port=_port(c), dbname="nope_db"), "--no-backup", "-q"], 3, r"nope_db|does not exist"),
    Case("canary-list/refused", lambda c: ["canary", "list", "--dsn", c.down()], 3, r"Connection refused"),
    Case("cleanup/no-database", lambda c: ["cleanup", "--dsn", c.down(port=_port(c), dbname="nope_db")], 3, r"nope_db|does not exist"),
    Case("scan-types/refused", lambda c: ["scan-types", "--dsn", c.down(), "-q"], 3, r"Connection refused"),
    Case("canary-seed/refused", lambda c: ["canary", "seed", "--dsn", c.down(), "--with", "current", "-q"], 3, r"Connection refused"),
    Case("plan/scratch-refused", lambda c: ["plan", "--dsn", c.dsn, "--scratch-dsn", c.down(dbname="postgres"), "-q"], 3, r"Connection refused"),
    # --- malformed DSNs (exit 2, before any work)
    Case("plan/unknown-dsn-keyword", lambda c: ["plan", "--dsn", f"hots=127.0.0.1 password={PW}", "-q"], 2, r"hots|invalid"),
    Case("migrate/url-port-not-a-number", lambda c: ["migrate", "--dsn", f"postgresql://u:{PW}@127.0.0.1:notaport/db", "--no-backup", "-q"], 2, r"port|invalid"),
    Case("verify/unterminated-quote", lambda c: ["verify", "--dsn", f"host=127.0.0.1 password='{PW}", "-q"], 2, r"quote|invalid|DSN"),
    # --- unknown or malformed version specs (exit 2)
    Case("plan/unknown-version", lambda c: ["plan", "--dsn", c.dsn, "--to", UNKNOWN, "-q"], 2, r"no such version"),
    Case("migrate/garbage-spec", lambda c: ["migrate", "--dsn", c.dsn, "--to", "langgraph-checkpoint-postgres=>>2", "--no-backup", "-q"], 2, r"spec|version|requirement"),
    Case("dump/unknown-version", lambda c: ["dump", "--dsn", c.dsn, "--from", UNKNOWN, "--out", str(c.tmp / "uv.lgdump"), "-q"], 2, r"no such version"),
    Case("canary-seed/unknown-version", lambda c: ["canary", "seed", "--dsn", c.dsn, "--with", UNKNOWN, "-q"], 2, r"no such version"),
    Case("restore/unknown-version", lambda c: ["restore", "--dsn", c.dsn, *ALLOW, "--to", UNKNOWN, str(c.dump), "-q"], 2, r"no such version"),
    Case("scan-types/unknown-version", lambda c: ["scan-types", "--dsn", c.dsn, "--to", UNKNOWN, "-q"], 2, r"no such version"),
    Case("verify/unknown-version", lambda c: ["verify", "--dsn", c.dsn, "--with", UNKNOWN, "-q"], 2, r"no such version|no goldens"),
    Case("migrate/fallback-unknown-from", lambda c: ["migrate", "--dsn", c.dsn, "--from", UNKNOWN, "--fallback", "dump-restore", "-q", "--backup-dir", str(c.tmp / "b-uf")], 2, r"no such version"),
    # --- options that contradict each other or are out of range (exit 2)
    Case("migrate/fallback-without-from", lambda c: ["migrate", "--dsn", c.dsn, "--fallback", "dump-restore", "-q", "--backup-dir", str(c.tmp / "b-nf")], 2, r"--from"),
    Case("migrate/fallback-without-backup", lambda c: ["migrate", "--dsn", c.dsn, "--from", "current", "--fallback", "dump-restore", "--no-backup", "-q"], 2, r"--no-backup"),
    Case("migrate/no-backup-and-backup-dir", lambda c: ["migrate", "--dsn", c.dsn, "--no-backup", "--backup-dir", str(c.tmp / "b-x"), "-q"], 2, r"contradict"),
    Case("migrate/fallback-not-a-choice", lambda c: ["migrate", "--dsn", c.dsn, "--fallback", "pray", "-q"], 2, r"pray"),
    Case("migrate/negative-lock-timeout", lambda c: ["migrate", "--dsn", c.dsn, "--lock-timeout", "-1", "--no-backup", "-q"], 2, r"lock-timeout"),
    Case("migrate/negative-retries", lambda c: ["migrate", "--dsn", c.dsn, "--retries", "-3", "--no-backup", "-q"], 2, r"retries"),
    Case("backup/zero-jobs", lambda c: ["backup", "--dsn", c.dsn, "--out", str(c.tmp / "b-zero"), "--jobs", "0", "-q"], 2, r"jobs"),
    Case("dump/shard-out-of-range", lambda c: ["dump", "--dsn", c.dsn, "--from", "current", "--shard", "3/2", "--out", str(c.tmp / "s.lgdump"), "-q"], 2, r"shard"),
    Case("restore-backup/system-schema", lambda c: ["restore-backup", "--dsn", c.dsn, str(c.backup), "--into-new-schema", "pg_evil", "-q"], 2, r"pg_evil"),
    Case("migrate/schema-does-not-exist", lambda c: ["migrate", "--dsn", c.dsn, "--schema", "no_such_schema", "--no-backup", "-q"], 2, r"no_such_schema"),
    Case("restore/verify-not-a-choice", lambda c: ["restore", "--dsn", c.dsn, "--verify", "never", str(c.dump), "-q"], 2, r"never"),
    # --- a role without privileges (exit 3, says so)
    Case("plan/no-privileges", lambda c: ["plan", "--dsn", c.noprivs, "-q"], 3, r"permission|privilege"),
    Case("migrate/no-privileges", lambda c: ["migrate", "--dsn", c.noprivs, "--no-backup", "-q"], 3, r"permission|privilege"),
    Case("backup/no-privileges", lambda c: ["backup", "--dsn", c.noprivs, "--out", str(c.tmp / "b-np"), "-q"], 3, r"permission|privilege"),
    Case("dump/no-privileges", lambda c: ["dump", "--dsn", c.noprivs, "--from", "current", "--out", str(c.tmp / "np.lgdump"), "-q"], 3, r"permission|privilege"),
    Case("verify/no-privileges", lambda c: ["verify", "--dsn", c.noprivs, "-q"], 2, r"no goldens"),
    Case("canary-seed/no-privileges", lambda c: ["canary", "seed", "--dsn", c.noprivs, "--with", "current", "-q"], 3, r"permission|privilege"),
    Case("restore-backup/no-privileges", lambda c: ["restore-backup", "--dsn", c.noprivs, str(c.backup), "--into-new-schema", "np_restore", "-q"], 3, r"permission|privilege"),
    Case("restore/no-privileges", lambda c: ["restore", "--dsn", c.noprivs, *ALLOW, str(c.dump), "-q"], 3, r"permission|privilege"),
    Case("scan-types/no-privileges", lambda c: ["scan-types", "--dsn", c.noprivs, "-q"], 3, r"permission|privilege"),
    # --- missing, corrupt or hostile files (exit 2, nothing written)
    Case("restore-backup/missing-dir", lambda c: ["restore-backup", "--dsn", c.dsn, str(c.tmp / "no-such-backup"), "-q"], 2, r"no-such-backup"),
    Case("restore-backup/flipped-byte", lambda c: ["restore-backup", "--dsn", c.dsn, str(_flip_a_byte(c.copy_backup())), "-q"], 2, r"sha256|checksum|corrupt"),
    Case("restore-backup/manifest-not-json", lambda c: ["restore-backup", "--dsn", c.dsn, str(_manifest_not_json(c.copy_backup())), "-q"], 2, r"manifest"),
    Case("restore-backup/file-missing", lambda c: ["restore-backup", "--dsn", c.dsn, str(_drop_a_file(c.copy_backup())), "-q"], 2, r"checkpoint_blobs|missing"),
    Case("restore/missing-dump", lambda c: ["restore", "--dsn", c.dsn, str(c.tmp / "nothing.lgdump"), "-q"], 2, r"nothing\.lgdump"),
    Case("restore/truncated-dump", lambda c: ["restore", "--dsn", c.dsn, str(_truncate(c.copy_dump())), "-q"], 2, r"dump|truncated|corrupt|checksum"),
    Case("restore/not-a-dump", lambda c: ["restore", "--dsn", c.dsn, str(_random_bytes(c.copy_dump())), "-q"], 2, r"dump|corrupt|checksum"),
    Case("restore/transform-module-missing", lambda c: ["restore", "--dsn", c.dsn, *ALLOW, "--transform", "no_such_module_xyz:fix", str(c.dump), "-q"], 2, r"no_such_module_xyz"),
    Case("restore/allow-file-missing", lambda c: ["restore", "--dsn", c.dsn, "--allow-file", str(c.tmp / "no-allow.txt"), str(c.dump), "-q"], 2, r"no-allow\.txt"),
    Case("backup/out-is-a-file", lambda c: ["backup", "--dsn", c.dsn, "--out", _write(c.tmp, "a-file", "x"), "-q"], 2, r"a-file"),
    Case("backup/out-not-empty", lambda c: ["backup", "--dsn", c.dsn, "--out", str(c.backup), "-q"], 2, r"empty|exists"),
    Case("verify/policy-missing", lambda c: ["verify", "--dsn", c.dsn, "--policy", str(c.tmp / "no-policy.toml"), "-q"], 2, r"no-policy\.toml"),
    Case("verify/policy-not-toml", lambda c: ["verify", "--dsn", c.dsn, "--policy", _write(c.tmp, "policy.toml", "[[[ not toml"), "-q"], 2, r"policy\.toml"),
    Case("canary-seed/already-seeded", lambda c: ["canary", "seed", "--dsn", c.dsn, "--with", "current", "--canaries", "no_such_canaries_mod:CANARIES", "-q"], 2, r"already exist"),
    Case("migrate/app-graph-fails-to-import", lambda c: ["migrate", "--dsn", c.dsn, "--graph", "chat=no_such_app_mod:graph", "--no-backup", "-q"], 2, r"no_such_app_mod"),
    # --- another migrator holds the lock (exit 4, safe to retry)
    Case("migrate/locked-no-wait", lambda c: ["migrate", "--dsn", c.dsn, "--no-wait", "--no-backup", "-q"], 4, r"lock", locked=True),
    Case("cleanup/locked", lambda c: ["cleanup", "--dsn", c.dsn, "--wait", "0"], 4, r"lock", locked=True),
    Case("restore-backup/locked", lambda c: ["restore-backup", "--dsn", c.dsn, str(c.backup), "--wait", "0", "-q"], 4, r"lock", locked=True),
    Case("canary-seed/locked", lambda c: ["canary", "seed", "--dsn", c.dsn, "--with", "current", "--wait", "0", "-q"], 4, r"lock", locked=True),
]
# fmt: on


def _port(c: Ctx) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(c.raw).get("port") or 5432)


def _error_line(err: str) -> str:
    """The one message line: ours (``error: ...``) or click's usage error (``Error: ...``
    after its ``Usage:``/``Try ...`` lines)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("…")]
    if lines and lines[0].startswith("Usage: "):
        assert len(lines) == 3 and lines[1].startswith("Try "), err
        lines = lines[2:]
        assert lines[0].startswith("Error: "), err
        return lines[0]
    assert len(lines) == 1, f"want one error line, got:\n{err}"
    assert lines[0].startswith("error: "), err
    return lines[0]


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason=c.xfail))
        if c.xfail
        else pytest.param(c, id=c.id)
        for c in CASES
    ]


def test_the_catalogue_is_broad() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.id.split("/")[0] for c in CASES}
    assert commands >= {
        "plan",
        "migrate",
        "verify",
        "backup",
        "restore-backup",
        "dump",
        "restore",
        "scan-types",
        "cleanup",
        "canary-seed",
        "canary-list",
    }


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml of this repository applies
    ctx.tmp = tmp_path
    args = case.args(ctx)
    before = db_state(ctx.raw)
    if case.locked:
        with advisory_lock(ctx.raw, wait=0):
            code, out, err = _main(args)
    else:
        code, out, err = _main(args)
    assert PW not in out + err, "the password shows"
    assert code == case.code, f"exit {code}, want {case.code}:\n{out[-2000:]}\n{err[-3000:]}"
    line = _error_line(err)
    assert re.search(case.message, line, re.IGNORECASE), line
    assert "Traceback" not in out + err
    assert db_state(ctx.raw) == before, "the database changed"


def test_the_module_database_is_still_the_fixture(ctx: Ctx) -> None:
    """The catalogue ran against a database that still holds the fixture's rows."""
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    with psycopg.connect(ctx.raw, autocommit=True) as conn:
        for table in manifest["tables"]:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table["name"]))
            assert conn.execute(query).fetchone() == (table["rows"],)
