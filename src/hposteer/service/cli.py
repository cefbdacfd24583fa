"""Server-side commands (`python -m hposteer.service ...`, also reached through `hposteer serve|token|db`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hposteer.service.config import Settings
from hposteer.service.events.registry import check_handler_settings

EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "database_url", "host", "port", "steering_mode", "log_level"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="directory of the SQLite database and blobs (HPOSTEER_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy database URL (HPOSTEER_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hposteer", description="hposteer steering service commands")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the steering service")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8750)")
    serve.add_argument("--steering-mode", choices=["process", "thread"], help="where optimisers run")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every request")

    token = sub.add_parser("token", help="create, list or revoke API tokens (run on the server host)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print its secret once")
    _common(create)
    create.add_argument("--role", required=True, choices=["user", "pilot", "admin"])
    create.add_argument("--owner", required=True, help="user name (tasks are visible to their owner only)")
    create.add_argument("--label", default="", help="free text to recognise the token by")
    create.add_argument("--expires-in-days", type=float, help="lifetime; default: never expires")
    create.add_argument("--json", action="store_true", help="print {id, token, role, owner} as JSON")
    create.add_argument(
        "--output",
        metavar="FILE",
        help="write the token to FILE (mode 0600) instead of printing it; clients read it with --token-file",
    )
    create.add_argument("--force", action="store_true", help="with --output: replace an existing FILE")
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    _common(listing)
    listing.add_argument("--json", action="store_true")
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    _common(revoke)
    revoke.add_argument("id", type=int)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    _common(db_sub.add_parser("upgrade", help="migrate the schema to the newest version"))
    _common(db_sub.add_parser("current", help="print the schema version"))

    mlflow = sub.add_parser("mlflow", help="MLflow tracking (the mlflow event handler, docs/events.md)")
    mlflow_sub = mlflow.add_subparsers(dest="mlflow_command", required=True)
    sync = mlflow_sub.add_parser(
        "sync", help="record the evaluated points whose MLflow run is missing or out of date (after an outage)"
    )
    _common(sync)
    sync.add_argument("task_ids", nargs="*", type=int, metavar="TASK_ID", help="default: every task")
    sync.add_argument("--tracking-uri", help="MLflow tracking store (HPOSTEER_MLFLOW_TRACKING_URI)")
    return parser


def _database(settings: Settings) -> Any:
    from hposteer.service.store.database import Database
    from hposteer.service.store.migrate import upgrade

    db = Database(settings.resolved_database_url, busy_timeout_s=settings.busy_timeout_s)
    upgrade(db.engine)
    return db


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from hposteer.service.app import create_app
    from hposteer.service.store.database import Database
    from hposteer.service.store.migrate import SchemaError, prepare_schema, printable_url

    url = settings.resolved_database_url
    db = Database(url, busy_timeout_s=settings.busy_timeout_s, pool_size=1)
    try:  # before the server starts, so that a refusal is one clear line and exit code 1
        prepare_schema(db.engine, auto_migrate=settings.auto_migrate, where=printable_url(url))
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"error: cannot reach the database {printable_url(url)}: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        db.dispose()

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=30,
    )
    return 0


def _implicit_database(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why a token command must not run: it was given no database and the default one does not exist.

    Creating a token in a fresh database next to the one a running server uses would print a token that
    server refuses; the operator is told to name the server's database instead.
    """
    named = args.data_dir or args.database_url
    from_env = any(os.environ.get(f"HPOSTEER_{n}") for n in ("DATA_DIR", "DATABASE_URL"))
    if named or from_env:
        return None
    default = settings.data_dir / "hposteer.db"
    if default.exists():
        return None
    return (
        f"no database at {default.absolute()} (the default, ./{settings.data_dir}/): this command would create a "
        "new, empty one that no server uses. Pass --data-dir DIR with the directory the server was started with "
        "(`hposteer serve --data-dir DIR`), or set HPOSTEER_DATA_DIR or --database-url as the server has them"
    )


def _write_token_file(path_text: str, secret: str, force: bool) -> str | None:
    """Write the secret to a new file readable by its owner only; returns an error message or None."""
    path = Path(path_text).expanduser()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return f"--output {path_text}: the file exists; pass --force to replace it"
    except OSError as exc:
        return f"--output {path_text}: cannot write it ({exc.strerror})"
    try:
        os.fchmod(fd, 0o600)  # also when --force replaced a file that others could read
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    return None


def _token_create(args: argparse.Namespace, db: Any, output: str | None) -> int:
    from hposteer.service.operations.auth import create_token
    from hposteer.service.operations.errors import Invalid
    from hposteer.service.store import tokens as token_store

    expires = args.expires_in_days * 86400 if args.expires_in_days is not None else None
    try:
        token_id, secret = create_token(db, role=args.role, owner=args.owner, label=args.label, expires_in_s=expires)
    except Invalid as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    described = {"id": token_id, "role": args.role, "owner": args.owner}
    if output is None:
        if args.json:
            print(json.dumps({**described, "token": secret}))
        else:
            print(secret)
            print(
                f"(token {token_id}: role {args.role}, owner {args.owner}; shown once, store it now)", file=sys.stderr
            )
        return 0
    problem = _write_token_file(output, secret, args.force)
    if problem is not None:
        with db.write() as conn:  # nobody holds this token: do not leave it valid
            token_store.revoke_token(conn, token_id)
        print(f"error: {problem}", file=sys.stderr)
        return 1
    where = Path(output).expanduser().absolute()
    if args.json:
        print(json.dumps({**described, "file": str(where)}))
    else:
        print(
            f"token {token_id} (role {args.role}, owner {args.owner}) written to {where} (mode 0600); "
            f"clients read it with --token-file {where} or HPOSTEER_TOKEN_FILE={where}"
        )
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from hposteer.service.store import tokens as token_store

    refusal = _implicit_database(args, settings)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    output = getattr(args, "output", None)
    if output is not None and Path(output).expanduser().exists() and not args.force:
        print(f"error: --output {output}: the file exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    db = _database(settings)
    try:
        if args.token_command == "create":
            return _token_create(args, db, output)
        if args.token_command == "list":
            with db.read() as conn:
                records = token_store.list_tokens(conn)
            if args.json:
                print(json.dumps([r.__dict__ for r in records]))
            else:
                for r in records:
                    state = "revoked" if r.revoked_at else "active"
                    print(f"{r.id:>5}  {r.role:<6} {r.owner:<20} {state:<8} {r.label}")
            return 0
        with db.write() as conn:
            revoked = token_store.revoke_token(conn, args.id)
        if not revoked:
            print(f"error: no active token with id {args.id}", file=sys.stderr)
            return 1
        print(f"token {args.id} revoked (cached copies expire within {settings.token_cache_s:g} s)")
        return 0
    finally:
        db.dispose()


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from hposteer.service.store.database import Database
    from hposteer.service.store.migrate import current_revision, head_revision, upgrade

    db = Database(settings.resolved_database_url)
    try:
        if args.db_command == "upgrade":
            upgrade(db.engine)
        print(f"schema version {current_revision(db.engine)} (newest {head_revision()})")
        return 0
    finally:
        db.dispose()


def _mlflow(args: argparse.Namespace, settings: Settings) -> int:
    from hposteer.service.events.mlflow_handler import HandlerUnavailable, MlflowHandler
    from hposteer.service.events.mlflow_sync import UnknownTask, sync_tasks
    from hposteer.service.store.blobs.registry import BLOB_STORES

    uri = args.tracking_uri or settings.mlflow_tracking_uri
    if not uri:
        print(
            "error: no MLflow tracking store: pass --tracking-uri or set HPOSTEER_MLFLOW_TRACKING_URI", file=sys.stderr
        )
        return EXIT_USAGE
    db = _database(settings)
    try:
        handler = MlflowHandler(
            uri, settings.mlflow_experiment_prefix, db, BLOB_STORES[settings.blob_store](settings.blob_dir, db)
        )
        synced = sync_tasks(handler, db, args.task_ids or None)
    except (HandlerUnavailable, UnknownTask) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    except Exception as exc:  # MLflow unreachable or refusing: say so in one line
        first = str(exc).splitlines()[0][:500] if str(exc) else ""
        print(f"error: MLflow at {uri} failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    for task in synced:
        print(f"task {task.task_id}: {task.recorded} run(s) recorded, {task.up_to_date} already up to date")
    print(f"{sum(t.recorded for t in synced)} run(s) recorded in {len(synced)} task(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"error: setting {field}: {err['msg']} (see docs/operator.md)", file=sys.stderr)
        return EXIT_USAGE
    try:  # the handlers' own settings: checked here and again by create_app, before anything starts
        check_handler_settings(settings.event_handlers, settings)
    except ValueError as exc:
        print(f"error: setting event_handlers: {exc} (see docs/events.md)", file=sys.stderr)
        return EXIT_USAGE
    handlers = {"serve": _serve, "token": _token, "db": _db, "mlflow": _mlflow}
    return handlers[args.command](args, settings)
