"""`iehub deploy up|down|status`: a whole Airflow deployment on one machine, for evaluation.

Owns the processes of a deployment: `airflow scheduler`, `airflow dag-processor`, `airflow
api-server` and, under CeleryExecutor, N `airflow celery worker`s, each started in a session of
its own with its pid file and log under IEHUB_HOME/deploy/. Guarantee: `down` stops every process
group it recorded (SIGTERM, a bounded wait, then SIGKILL) and `up` refuses to start a second
deployment over a live one, so nothing is left running or started twice.

Each worker gets its own IEHUB_HOME (deploy/worker-N/home) so that, as on separate machines, the
workers share nothing but services: Redis (broker), PostgreSQL (Airflow metadata, the catalog)
and the lake (IEHUB_LAKE_URL). This is why `airflow standalone` was not used: it runs one local
executor on one home and so cannot show that the hub works when workers share no disk.
Secrets (the JWT secret every process must share) are generated once into deploy/secrets.env
(mode 600) and never logged.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from iehub.config import Settings
from iehub.orchestration import airflow_env, ensure_airflow_db, metadata_urls

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
EXECUTORS = {"celery": "CeleryExecutor", "local": "LocalExecutor"}


class DeployError(RuntimeError):
    """A deployment cannot start or stop; the message says what to do."""


@dataclass(frozen=True)
class Deployment:
    home: Path
    api_url: str
    executor: str
    processes: dict[str, int]


def deploy_dir(settings: Settings) -> Path:
    return settings.home / "deploy"


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (state first), None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _started(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields else ""


def _alive(pid: int) -> bool:
    """True while pid is the process we started (a pid file records its start time: a reused pid is not ours)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z" and _recorded_start.get(pid, fields[19]) == fields[19]


_recorded_start: dict[int, str] = {}


def _pids(folder: Path) -> dict[str, int]:
    found = {}
    for path in sorted(folder.glob("*.pid")):
        pid, _, started = path.read_text().strip().partition(" ")
        found[path.stem] = int(pid)
        _recorded_start[int(pid)] = started
    return found


def check_redis(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        raise DeployError(f"Redis (the Celery broker) at {host}:{port} is not reachable ({exc}); "
                          f"start it or set IEHUB_BROKER_URL") from exc
    if not reply.startswith((b"+PONG", b"-NOAUTH")):
        raise DeployError(f"{host}:{port} did not answer PING like Redis; set IEHUB_BROKER_URL to the broker")


def ensure_postgres_database(url: str, purpose: str) -> None:
    """Check the PostgreSQL server answers and create the database `url` names if it is missing."""
    import sqlalchemy as sa

    target = sa.engine.make_url(metadata_urls(url)[0])
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    where = f"{target.host or 'localhost'}:{target.port or 5432}"
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": target.database}).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    except sa.exc.OperationalError as exc:
        raise DeployError(f"PostgreSQL ({purpose}) at {where} is not reachable "
                          f"({str(exc.orig).splitlines()[0]}); start it or set its URL") from exc
    finally:
        admin.dispose()


def _secrets(folder: Path) -> dict[str, str]:
    path = folder / "secrets.env"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(f"AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(32)}\n"
                        f"AIRFLOW__API__SECRET_KEY={secrets.token_urlsafe(32)}\n", encoding="utf-8")
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").split())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(folder: Path, name: str, args: list[str], env: dict[str, str]) -> int:
    with (folder / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _recorded_start[proc.pid] = _started(proc.pid)
    (folder / f"{name}.pid").write_text(f"{proc.pid} {_recorded_start[proc.pid]}")
    return proc.pid


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def up(settings: Settings, workers: int = 2, executor: str = "celery", port: int = 8080,
       concurrency: int = 2, wait_seconds: float = 180) -> Deployment:
    """Start the deployment and wait until its api-server answers; raise DeployError if anything is missing."""
    if executor not in EXECUTORS:
        raise DeployError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    folder = deploy_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    running = [n for n, pid in _pids(folder).items() if _alive(pid)]
    if running:
        raise DeployError(f"a deployment is already up in {folder} ({', '.join(running)}); run `iehub deploy down` first")
    for stale in folder.glob("*.pid"):
        stale.unlink()

    broker = os.environ.get("IEHUB_BROKER_URL") or DEFAULT_BROKER
    db_url = settings.airflow_db_url or f"{DEFAULT_PG}/iehub_airflow"
    catalog_url = settings.catalog_url or f"{DEFAULT_PG}/iehub"
    if executor == "celery":
        if catalog_url.startswith("sqlite"):
            raise DeployError("set IEHUB_CATALOG_URL to a PostgreSQL database all workers reach")
        check_redis(broker)
    ensure_postgres_database(db_url, "Airflow metadata")
    if not catalog_url.startswith("sqlite"):
        ensure_postgres_database(catalog_url, "the iehub catalog")
    settings = Settings(home=settings.home, catalog_url=catalog_url, airflow_db_url=db_url,
                        lake_url=settings.lake_url, lake_conn_id=settings.lake_conn_id,
                        publish_url=settings.publish_url).ensure()

    api_url = f"http://127.0.0.1:{port}"
    queue = os.environ.get("IEHUB_CELERY_QUEUE") or f"iehub_{secrets.token_hex(4)}"
    shared = {
        "IEHUB_CATALOG_URL": catalog_url,
        "IEHUB_AIRFLOW_DB_URL": db_url,
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[executor],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,  # a queue of its own: another deployment on the broker takes nothing
        **_secrets(folder),
    }
    log = folder / "migrate.log"
    ensure_airflow_db(settings, log)
    env = airflow_env(settings, shared)
    pools = subprocess.run([sys.executable, "-c", "from iehub.run_dag import ensure_pools; ensure_pools()"],
                           env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)
    if pools.returncode != 0:
        raise DeployError(f"creating the sources' pools failed; see {log}")

    pids: dict[str, int] = {}
    try:
        pids["scheduler"] = _start(folder, "scheduler", ["scheduler"], env)
        pids["dag-processor"] = _start(folder, "dag-processor", ["dag-processor"], env)
        pids["api-server"] = _start(folder, "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port),
                                                           "--workers", "1"], env)
        for n in range(1, workers + 1 if executor == "celery" else 1):
            worker_home = Settings(home=folder / f"worker-{n}" / "home", catalog_url=catalog_url,
                                   airflow_db_url=db_url, lake_url=settings.lake_url,
                                   lake_conn_id=settings.lake_conn_id, publish_url=settings.publish_url).ensure()
            worker_env = airflow_env(worker_home, {**shared, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT":
                                                   str(_free_port())})
            pids[f"worker-{n}"] = _start(folder, f"worker-{n}", [
                "celery", "worker", "--concurrency", str(concurrency), "--queues", queue,
                "--celery-hostname", f"iehub-worker-{n}@{socket.gethostname()}"], worker_env)
        deadline = time.monotonic() + wait_seconds
        while not _healthy(api_url):
            dead = [n for n, pid in pids.items() if not _alive(pid)]
            if dead:
                raise DeployError(f"{', '.join(dead)} exited during start-up; see {folder}/{dead[0]}.log")
            if time.monotonic() > deadline:
                raise DeployError(f"the api-server did not answer on {api_url} within {wait_seconds:.0f} s; "
                                  f"see {folder}/api-server.log")
            time.sleep(1)
    except BaseException:
        down(settings)
        raise
    state = {"api_url": api_url, "executor": executor, "queue": queue, "workers": workers}
    (folder / "deployment.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    return Deployment(settings.home, api_url, executor, pids)


def down(settings: Settings, wait_seconds: float = 60) -> list[str]:
    """Terminate every recorded process group, wait for them, kill what is left; returns the names stopped."""
    folder = deploy_dir(settings)
    live = {n: pid for n, pid in _pids(folder).items() if _alive(pid)} if folder.exists() else {}
    for pid in live.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_seconds
    while any(_group_alive(pid) for pid in live.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in live.values():
        if _group_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in live.values():
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it (no zombie left behind)
        except ChildProcessError:
            pass
    for path in folder.glob("*.pid") if folder.exists() else []:
        path.unlink()
    return sorted(live)


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the group pgid remains."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def status(settings: Settings) -> dict[str, object]:
    folder = deploy_dir(settings)
    state = json.loads((folder / "deployment.json").read_text()) if (folder / "deployment.json").exists() else {}
    procs = {n: ("running" if _alive(pid) else "stopped") for n, pid in _pids(folder).items()} if folder.exists() else {}
    api = state.get("api_url")
    return {"processes": procs, "api_url": api, "api_healthy": bool(api and procs and _healthy(api)),
            "executor": state.get("executor")}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m iehub.deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--workers", type=int, default=2)
    p_up.add_argument("--executor", choices=sorted(EXECUTORS), default="celery")
    p_up.add_argument("--port", type=int, default=8080)
    p_up.add_argument("--concurrency", type=int, default=2)
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "up":
            dep = up(settings, args.workers, args.executor, args.port, args.concurrency)
            print(f"up: {', '.join(dep.processes)}; API and UI at {dep.api_url}; logs in {deploy_dir(settings)}")
        elif args.command == "down":
            print(f"stopped: {', '.join(down(settings)) or 'nothing was running'}")
        else:
            print(json.dumps(status(settings), indent=1))
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
