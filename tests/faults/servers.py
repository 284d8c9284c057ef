"""Private server instances the fault suite owns and may kill: RabbitMQ, PostgreSQL, MariaDB.

Each runs from a directory of its own under the run's work directory, on spare ports, so the
machine's shared servers (5672, 5432, 3306), which other people test against at the same time,
are never stopped, restarted, alarmed or slowed. PostgreSQL and MariaDB refuse to run as root,
so their data directories are handed to the ``postgres`` and ``mysql`` users; the work
directory therefore lives under a world-traversable temp directory (``/tmp``), not ``/root``.

Every instance is stopped by :meth:`close` (idempotent), and :class:`Servers` closes all of
them, also on an exception or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["MariaDB", "Postgres", "Rabbit", "Servers", "free_port"]

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path(
    "/usr/lib/postgresql").exists() else Path("/usr/bin")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} after {timeout:.0f} s")


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
         user: str | None = None) -> subprocess.CompletedProcess[str]:
    if user is not None:
        args = ["runuser", "-u", user, "--", *args]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, not reaped yet) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not _alive(pid), 30, f"process {pid} still alive")


class Rabbit:
    """A RabbitMQ node ``hubfaults<port>@localhost`` on its own AMQP and distribution ports,
    with its own Erlang cookie (``HOME`` in its directory), no plugins, and the shared node's
    ``/etc/rabbitmq`` files ignored."""

    def __init__(self, root: Path) -> None:
        self.root = root / "rabbitmq"
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.node = f"hubfaults{self.port}@localhost"
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
            "vm_memory_high_watermark.relative = 0.4\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.root), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self._launcher: subprocess.Popen[bytes] | None = None

    def ctl(self, *args: str, timeout: float = 120) -> str:
        return _run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                    timeout=timeout).stdout

    def start(self) -> None:
        log = open(self.root / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        self._launcher = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")], env=self.env, cwd=self.root, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 120
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", "--timeout", "120", timeout=150)
                break
            except RuntimeError:
                if time.monotonic() > deadline or self._launcher.poll() is not None:
                    raise
                time.sleep(0.5)
        _wait(lambda: _listening(self.port), 60, "RabbitMQ not listening")

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.root / "pid").read_text().strip())
            return pid if _alive(pid) else None
        return None

    def kill(self) -> None:
        """SIGKILL the Erlang VM (and its launcher)."""
        pid = self.pid()
        if pid is not None:
            _kill9(pid)
        if self._launcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._launcher.wait(30)
        (self.root / "pid").unlink(missing_ok=True)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        _wait(lambda: _listening(self.port), 60, "RabbitMQ not listening after start_app")

    def memory_alarm(self, on: bool) -> None:
        self.ctl("set_vm_memory_high_watermark", "0" if on else "0.4")

    def close(self) -> None:
        if self.pid() is not None:
            with contextlib.suppress(Exception):
                self.ctl("shutdown", timeout=60)
        if self.pid() is not None:
            self.kill()
        if self._launcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._launcher.pid, signal.SIGKILL)
            self._launcher.wait(10)


class Postgres:
    """A PostgreSQL cluster of its own (initdb, trust authentication) run by ``postgres``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "postgresql"
        self.data = self.root / "data"
        self.port = free_port()
        self.root.mkdir(parents=True)
        shutil.chown(self.root, "postgres", "postgres")
        _run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
              "-E", "UTF8", "--no-instructions"], user="postgres")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
                       "shared_buffers = 128MB\n")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
              *args], user="postgres", timeout=180)

    def start(self) -> None:
        self._ctl("start", "-w", "-t", "120")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, recovery from the WAL at the next start."""
        self._ctl("stop", "-w", "-m", mode, "-t", "120")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")


class MariaDB:
    """A MariaDB server of its own (``--skip-grant-tables``: root without a password), run by
    ``mysql``; reached by the hub through ODBC as the ERP."""

    def __init__(self, root: Path) -> None:
        self.root = root / "mariadb"
        self.data = self.root / "data"
        self.port = free_port()
        self.root.mkdir(parents=True)
        shutil.chown(self.root, "mysql", "mysql")
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=mysql",
              "--skip-test-db", "--auth-root-authentication-method=normal"], timeout=180)
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return (f"mysql+pyodbc://root:@127.0.0.1:{self.port}/{database}"
                "?driver=MariaDB+Unicode&charset=utf8mb4")

    def start(self) -> None:
        log = open(self.root / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'sock'}", "--user=mysql",
             "--skip-grant-tables", "--skip-name-resolve", f"--pid-file={self.root / 'pid'}",
             "--innodb-buffer-pool-size=256M", "--max-connections=300",
             "--innodb-flush-log-at-trx-commit=1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait(lambda: _listening(self.port) or self._proc is None or
              self._proc.poll() is not None, 120, "MariaDB not listening")
        if self._proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited {self._proc.returncode}; see {self.root}")

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(60)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(120)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.kill()


class Servers:
    """The three private servers under ``root``; a context manager that closes them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rabbit: Rabbit | None = None
        self.postgres: Postgres | None = None
        self.mariadb: MariaDB | None = None

    def __enter__(self) -> Servers:
        try:
            self.postgres = Postgres(self.root)
            self.postgres.start()
            self.mariadb = MariaDB(self.root)
            self.mariadb.start()
            self.rabbit = Rabbit(self.root)
            self.rabbit.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for server in (self.rabbit, self.mariadb, self.postgres):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
