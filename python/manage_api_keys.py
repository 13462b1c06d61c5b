#!/usr/bin/env python3
"""Create, list and revoke the service's API keys (stored hashed in its database).

    python/manage_api_keys.py create --name "school backend" --role backend   # prints the key once
    python/manage_api_keys.py create --name "Ms Nguyen" --role teacher
    python/manage_api_keys.py list
    python/manage_api_keys.py revoke KEY_ID

Uses the same settings as the service (DATABASE_URL, or the embedded PostgreSQL under DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recognition_service.security import api_keys
from recognition_service.security.roles import ROLES
from recognition_service.serving import preflight  # noqa: E402

PROG = "manage_api_keys"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it (it is not shown again)")
    create.add_argument("--name", required=True, help="who uses the key, e.g. 'school backend'")
    create.add_argument("--role", choices=ROLES, default="backend",
                        help="what the key may do (README 'Roles'): admin, backend (default), teacher, viewer")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = sub.add_parser("revoke", help="revoke a key: requests with it get 403")
    revoke.add_argument("key_id", type=int, help="the key_id shown by create or list")
    args = parser.parse_args(argv)

    import psycopg2

    try:
        settings = preflight.load_checked_settings()
        url = preflight.prepare_database(settings, for_serving=False)
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)
    with psycopg2.connect(url) as conn:
        if args.command == "create":
            key_id, key = api_keys.create_key(conn, args.name, args.role)
            print(json.dumps({"key_id": key_id, "name": args.name, "role": args.role, "api_key": key}))
        elif args.command == "list":
            print(json.dumps(api_keys.list_keys(conn), indent=2))
        elif not api_keys.revoke_key(conn, args.key_id):
            print(f"{PROG}: no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(json.dumps({"revoked": args.key_id}))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
