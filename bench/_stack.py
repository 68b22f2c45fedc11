"""The real stack for benchmarks: daphne and Celery workers as subprocesses on the bench database and Redis, and an
open-loop HTTP load generator for signed webhooks.

    with Stack(web=True, workers=1, concurrency=2) as stack:
        results = asyncio.run(post_at_rate(stack.url + "/webhooks/whatsapp/", bodies, rate=200))
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from _common import ROOT

APP_SECRET = "bench-app-secret"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(**extra: str) -> dict[str, str]:
    """The environment every bench process shares: bench database and Redis, production-like settings."""
    env = {**os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DEBUG="false",  # DEBUG keeps every SQL query in memory: not what production runs
        LOG_LEVEL="WARNING",
        WHATSAPP_APP_SECRET=APP_SECRET,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def sign(raw: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()


def signed(body: dict) -> tuple[bytes, str]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return raw, sign(raw)


class Stack:
    """Start daphne (`web`) and `workers` Celery worker processes; stop them on exit."""

    def __init__(
        self,
        *,
        web: bool = True,
        workers: int = 0,
        concurrency: int = 2,
        queues: str = "default",
        env: dict[str, str] | None = None,
    ) -> None:
        self.web, self.workers, self.concurrency, self.queues = web, workers, concurrency, queues
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []
        self._logdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))

    def _start(self, name: str, args: list[str]) -> None:
        log = self._logdir / f"{name}.log"
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=stack_env(APP_COMPONENT=name, **({"DATABASE_POOL_SIZE": "10"} if name == "web" else {}), **self.env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.append((name, proc, log))

    def __enter__(self) -> Stack:
        if self.web:
            self._start(
                "web", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"]
            )
        for n in range(self.workers):
            self._start(
                f"worker{n}",
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    self.queues,
                    "-n",
                    f"bench{n}@%h",
                    f"--concurrency={self.concurrency}",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
            )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        if self.web:
            while True:
                self._check_alive()
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"daphne did not listen within {timeout:g}s; see {self._logdir}") from None
                    time.sleep(0.1)
        if self.workers:
            from config.celery import app

            while len(app.control.ping(timeout=0.5) or []) < self.workers:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Celery workers did not answer within {timeout:g}s; see {self._logdir}")

    def _check_alive(self) -> None:
        for name, proc, log in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")

    def __exit__(self, *exc_info: object) -> None:
        for _, proc, _ in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in self._procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass
class PostResult:
    sent_at: float  # perf_counter when the request was due
    latency: float  # seconds from due time to the full response
    status: int


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server for the load clients: at most `size` open at once."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.available = asyncio.Condition()

    async def acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.available:
            while not self.idle and self.opened >= self.size:
                await self.available.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError:
            await self.release(None)
            raise

    async def release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        """Give back a connection to reuse, or None for one that is closed (or never opened)."""
        async with self.available:
            if conn is None:
                self.opened -= 1
            else:
                self.idle.append(conn)
            self.available.notify()

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def post_at_rate(
    url: str, requests: list[tuple[bytes, str]], *, rate: float, connections: int = 64
) -> list[PostResult]:
    """POST each (body, signature) at `rate` per second on a fixed schedule (open loop: a slow answer does not
    delay the next request, so queueing shows up in the latencies). Latency counts from the scheduled time.

    A minimal HTTP/1.1 keep-alive client on asyncio streams: at 200 requests a second an httpx client spent more
    CPU than the server it measured, on the same two cores."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    pool = ConnectionPool(host, port, connections)
    results: list[PostResult] = []

    async def one(due: float, raw: bytes, signature: str) -> None:
        conn = None
        try:
            conn = await pool.acquire()
            reader, writer = conn
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                + raw
            )
            await writer.drain()
            status = await _read_response(reader)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
            if conn is not None:
                conn[1].close()
            conn = None
        results.append(PostResult(due, time.perf_counter() - due, status))
        await pool.release(conn)

    start = time.perf_counter() + 0.05
    tasks = []
    for index, (raw, signature) in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, raw, signature)))
    await asyncio.gather(*tasks)
    pool.close()
    return results


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection stays open) of one HTTP/1.1 response."""
    status_line = await reader.readline()
    if not status_line:
        raise ValueError("connection closed")
    status = int(status_line.split()[1])
    length, chunked, keep = None, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep = False
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                return status, body, keep
    if length is None:
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep


async def _read_response(reader: asyncio.StreamReader) -> int:
    """The status code of one HTTP/1.1 response, its body read past."""
    return (await read_response(reader))[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
