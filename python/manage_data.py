#!/usr/bin/env python3
"""Back up, restore and check the service's database (students, faces, kept crops, keys, sessions).

    python/manage_data.py backup school.dump      # while the service runs: one consistent snapshot
    python/manage_data.py restore school.dump     # into an empty data folder or empty database
    python/manage_data.py check school.dump       # restores into a scratch server and counts what is in it

Uses the same settings as the service (DATABASE_URL, or the embedded PostgreSQL under DATA_DIR) and
PostgreSQL's own pg_dump / pg_restore: the ones installed with the embedded server (pgserver), or those
named by PG_BIN_DIR (for a DATABASE_URL server newer than them). Evidence images are files under
DATA_DIR/evidence and are not in the dump: README "Back up and restore" says how to copy them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recognition_service.serving import preflight  # noqa: E402

PROG = "manage_data"
# What a school checks after a backup or a restore: each row count (the dump holds every table).
COUNTED = {"students": "students", "faces": "faces", "face_crops": "face_crops",
           "api_keys": "api_keys WHERE revoked_at IS NULL", "sessions": "sessions",
           "recognitions": "session_recognitions", "review_items": "review_items", "evidence_rows": "evidence"}


class DataError(Exception):
    """A refusal or failure, said in one line."""


def pg_tool(name: str) -> str:
    """The path of pg_dump / pg_restore: PG_BIN_DIR's, else the embedded server's, else the system's."""
    folders = [os.environ["PG_BIN_DIR"]] if os.environ.get("PG_BIN_DIR") else []
    try:
        import pgserver

        folders.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    for folder in folders:
        path = shutil.which(name, path=folder)
        if path:
            return path
    path = shutil.which(name)
    if path is None:
        raise DataError(f"{name} not found: install the PostgreSQL client or set PG_BIN_DIR")
    return path


def database_url(settings) -> str:
    """The service's database, starting the embedded server when there is no DATABASE_URL. Not migrated
    here: a restore needs it empty."""
    if settings.DATABASE_URL:
        return settings.DATABASE_URL
    from recognition_service.storage.embedded_pg import start_embedded_postgres

    return start_embedded_postgres(settings.DATA_DIR)


def counts(cur) -> dict[str, int]:
    out = {}
    for key, table in COUNTED.items():
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - names from COUNTED, not from input
        out[key] = cur.fetchone()[0]
    return out


def run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise DataError(f"{Path(args[0]).name} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def backup(url: str, target: Path) -> dict:
    """pg_dump in the custom format (compressed; pg_restore reads it), from a snapshot this connection
    exported, so the counts printed are those of the dump even while cameras and uploads write."""
    import psycopg2

    if target.exists() and target.is_dir():
        raise DataError(f"{target} is a folder; give a file name")
    partial = target.with_name(target.name + ".partial")
    started = time.monotonic()
    conn = psycopg2.connect(url)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            found = counts(cur)
            run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                 f"--file={partial}", f"--dbname={url}"])
        conn.rollback()
    finally:
        conn.close()
    partial.replace(target)  # a backup cut short never takes the name of a good one
    return {"backup": str(target), "bytes": target.stat().st_size, "seconds": round(time.monotonic() - started, 2),
            "counts": found}


def restore(url: str, source: Path) -> dict:
    """pg_restore into a database with no tables (a fresh data folder, or an empty DATABASE_URL), then the
    migrations a newer service adds."""
    import psycopg2

    from recognition_service.storage.migrate import apply_migrations

    if not source.is_file():
        raise DataError(f"{source}: no such backup file")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        if cur.fetchone()[0]:
            raise DataError("the database is not empty: restore into a new DATA_DIR (or an empty database); "
                            "nothing was changed")
    conn.close()
    started = time.monotonic()
    run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         f"--dbname={url}", str(source)])
    with psycopg2.connect(url) as conn:
        apply_migrations(conn)
        with conn.cursor() as cur:
            found = counts(cur)
    conn.close()
    return {"restored": str(source), "seconds": round(time.monotonic() - started, 2), "counts": found}


def check(source: Path) -> dict:
    """Restore the backup into a throwaway embedded server and count what it holds."""
    from recognition_service.storage.embedded_pg import start_embedded_postgres

    with tempfile.TemporaryDirectory(prefix="recognizer-check-") as scratch:
        result = restore(start_embedded_postgres(Path(scratch)), source)
        _stop_embedded(Path(scratch) / "pgdata")
    return {"checked": str(source), "counts": result["counts"]}


def _stop_embedded(pgdata: Path) -> None:
    """Stop a scratch server now (pgserver would stop it at exit, after its folder is gone)."""
    subprocess.run([pg_tool("pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast"], capture_output=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="write a consistent backup (the service may run)").add_argument("file", type=Path)
    sub.add_parser("restore", help="restore into an empty data folder or database").add_argument("file", type=Path)
    sub.add_parser("check", help="restore into a scratch server and count its contents").add_argument("file",
                                                                                                      type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            result = check(args.file)
        else:
            settings = preflight.load_checked_settings()
            url = database_url(settings)
            result = backup(url, args.file) if args.command == "backup" else restore(url, args.file)
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)
    except DataError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
