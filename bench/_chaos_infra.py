"""What `bench/chaos.py` breaks: its own PostgreSQL and Redis servers (so restarting them never touches the
machine's), the product's processes (daphne, Celery workers, the sessions worker, beat) that it can SIGKILL and
start again, and a webhook sender that retries like Meta until it gets a 200.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import ROOT
from _stack import _read_response, free_port, stack_env

BIN = Path(sys.executable).parent


def _wait(predicate, *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb in `root`, trust auth, a free port on 127.0.0.1)."""

    def __init__(self, root: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise RuntimeError(
                "PostgreSQL server programs not found under /usr/lib/postgresql (apt-get install postgresql)"
            )
        self.bin = found[-1].parent
        self.dir = root / "postgres"
        self.dir.mkdir()
        self.data, self.log, self.port = self.dir / "data", self.dir / "server.log", free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            root.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chaos"

    def _ctl(self, *args: str, timeout: float = 90) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr or result.stdout}")

    def init(self) -> None:
        self._ctl(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._ctl(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast`: what `systemctl restart postgresql` or a container stop does (sessions are cut, nothing is lost);
        `immediate`: a crash (recovery from the WAL on the next start)."""
        self._ctl(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A throwaway redis-server with the persistence compose.yaml gives production (append-only file)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                str(self.dir / "server.log"),
            ],
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        _wait(up, timeout=30, what="redis-server")

    def stop(self) -> None:
        """SIGTERM, as `docker compose restart redis` sends: Redis writes its append-only file and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def destroy(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.time)


class Processes:
    """The product's processes as Procfile runs them, each startable, killable (SIGKILL, whole process group) and
    stoppable by name; every death is noted with its time."""

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir, self.env = logdir, env
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.running: dict[str, Proc] = {}
        self.deaths: dict[int, float] = {}  # pid -> when it was killed or stopped
        self._generation = Counter()

    def command(self, name: str) -> list[str]:
        celery = [str(BIN / "celery"), "-A", "config"]
        quiet = ["--loglevel=WARNING", "--without-gossip", "--without-mingle"]
        n = self._generation[name]
        if name == "web":
            return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.web_port), "config.asgi:application"]
        if name == "worker":
            return [
                *celery,
                "worker",
                "-Q",
                "default,campaigns",
                "-n",
                f"chaos-worker-{n}@%h",
                "--concurrency=2",
                *quiet,
            ]
        if name.startswith("sessions"):
            return [
                *celery,
                "worker",
                "-Q",
                "sessions",
                "-n",
                f"chaos-{name}-{n}@%h",
                "-P",
                "threads",
                "--concurrency=4",
                *quiet,
            ]
        if name == "beat":
            return [*celery, "beat", "--loglevel=WARNING", f"--pidfile={self.logdir / 'beat.pid'}"]
        raise ValueError(name)

    def start(self, name: str) -> Proc:
        self._generation[name] += 1
        log = self.logdir / f"{name}-{self._generation[name]}.log"
        component = "sessions" if name.startswith("sessions") else name
        env = stack_env(APP_COMPONENT=component, **self.env)
        if name == "web":
            env["DATABASE_POOL_SIZE"] = "10"
        popen = subprocess.Popen(
            self.command(name),
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.running[name] = proc
        return proc

    def wait_web(self, timeout: float = 60) -> None:
        import socket

        def listening() -> bool:
            self.check_alive("web")
            try:
                with socket.create_connection(("127.0.0.1", self.web_port), timeout=0.5):
                    return True
            except OSError:
                return False

        _wait(listening, timeout=timeout, what="daphne to listen")

    def check_alive(self, *names: str) -> None:
        for name in names or list(self.running):
            proc = self.running[name]
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{proc.log.read_text()[-3000:]}")

    def kill(self, name: str) -> float:
        """SIGKILL the process group; when it died."""
        proc = self.running.pop(name)
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        at = time.time()
        self.deaths[proc.popen.pid] = at
        return at

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM (a warm shutdown), SIGKILL if it takes longer than `timeout`."""
        proc = self.running.pop(name)
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
        except ProcessLookupError:
            pass
        self.deaths[proc.popen.pid] = time.time()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def errors(self) -> list[str]:
        """Traceback lines in every log of this run (informational: a killed server makes the others log)."""
        found = []
        for log in sorted(self.logdir.glob("*.log")):
            found += [
                f"{log.name}: {line}" for line in log.read_text(errors="replace").splitlines() if "Traceback" in line
            ]
        return found


@dataclass
class SendReport:
    bodies: int = 0
    acked: int = 0
    answers: Counter = field(default_factory=Counter)  # status code (0: no answer) -> count, every attempt
    log: list[tuple[float, int]] = field(default_factory=list)  # (when answered, status) of every attempt
    retried: int = 0


class WebhookSender(threading.Thread):
    """POSTs signed webhook bodies at `rate` per second on a fixed schedule and retries each, like Meta, until it
    is answered 200 (every `retry` seconds, up to `give_up` seconds). A new connection per request: the server
    may be killed at any moment."""

    def __init__(
        self, url: str, requests: list[tuple[bytes, str]], *, rate: float, retry: float = 0.5, give_up: float = 180
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.requests, self.rate, self.retry, self.give_up = url, requests, rate, retry, give_up
        self.report = SendReport(bodies=len(requests))
        self.sent_all = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        start = time.monotonic()

        async def one(index: int, raw: bytes, signature: str) -> None:
            due = start + index / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            first = True
            while time.monotonic() - due < self.give_up:
                if not first:
                    self.report.retried += 1
                first = False
                status = await self._post(parts.hostname, parts.port, parts.path, raw, signature)
                self.report.answers[status] += 1
                self.report.log.append((time.time(), status))
                if status == 200:
                    self.report.acked += 1
                    return
                await asyncio.sleep(self.retry)

        tasks = [asyncio.create_task(one(i, raw, sig)) for i, (raw, sig) in enumerate(self.requests)]
        await asyncio.sleep(max(0.0, len(self.requests) / self.rate - (time.monotonic() - start)))
        self.sent_all.set()
        await asyncio.gather(*tasks)

    @staticmethod
    async def _post(host: str, port: int, path: str, raw: bytes, signature: str) -> int:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
        except (TimeoutError, OSError):
            return 0
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(raw)}\r\nConnection: close\r\n\r\n".encode()
                + raw
            )
            await writer.drain()
            return await asyncio.wait_for(_read_response(reader), timeout=30)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            return 0
        finally:
            writer.close()
