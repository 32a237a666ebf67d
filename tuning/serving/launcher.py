"""``run_search.py serve`` in a child process, for tests and benchmarks: started on 127.0.0.1 and
a free port, ready once ``/health`` answers, stopped by its own PID (terminate, then kill)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from tuning.settings import REPO_ROOT

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A served model in a child process; use as a context manager.

    Args:
        model_dir: the folder to serve.
        flags: more ``run_search.py serve`` flags, e.g. ``("--max-wait-ms", "0")``.
        startup_timeout: seconds to wait for ``/health`` before giving up.
        env: extra environment variables of the child.
    """

    def __init__(
        self,
        model_dir: str | Path,
        flags: tuple[str, ...] = (),
        startup_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.flags = flags
        self.startup_timeout = startup_timeout
        self.env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        """What the server printed so far."""
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def start(self) -> ServerProcess:
        self.port = free_port()
        command = [sys.executable, str(REPO_ROOT / "run_search.py"), "serve", str(self.model_dir)]
        command += ["--host", HOST, "--port", str(self.port), "--device", "cpu", *self.flags]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"the server did not answer /health in {self.startup_timeout} s:\n{self.log()[-3000:]}"
        )

    def stop(self) -> None:
        """Terminate the child by its PID; kill it if it has not exited 10 s later."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        Path(self._log.name).unlink(missing_ok=True)
