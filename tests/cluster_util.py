"""A Ray cluster of separate nodes on this machine's loopback addresses, for tests and benchmarks.

Each node is its own ``ray start --block`` process on its own 127.0.N.x address, with its own
ports, ``--temp-dir`` and one auth token shared by the cluster only, so nothing collides with
other Ray instances on the machine. Everything is stopped by the PIDs this module started
(a node's ``ray start`` process and every process seen below it), never by ``ray stop`` or by
name, which would reach other people's clusters.

    with LoopbackCluster(num_workers=1) as cluster:
        subprocess.run([..., "--address", cluster.address], env=cluster.env)
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
# Ports outside Linux's ephemeral range (32768-60999), where Ray's workers and clients bind.
PORT_RANGE = (20000, 32000)
HEAD_PORTS = (
    "port",
    "ray-client-server-port",
    "dashboard-port",
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
WORKER_PORTS = HEAD_PORTS[3:]
READY = "This command will now block forever"


class ClusterError(RuntimeError):
    """A node did not start or join; the message carries the tail of its log."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that nothing listens on, on any interface."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            port = random.randint(*PORT_RANGE)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


@dataclass
class Node:
    """One ``ray start --block`` process and what it spawned."""

    name: str
    ip: str
    temp_dir: Path
    process: subprocess.Popen
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    """Every process ever seen below ``process``, by PID (psutil guards against PID reuse)."""

    @property
    def log(self) -> Path:
        return self.temp_dir / "ray_start.log"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def descendants(self) -> list[psutil.Process]:
        """The live processes below ``ray start`` (GCS, raylet, agents, workers), remembered."""
        try:
            found = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for proc in found:
            self.seen.setdefault(proc.pid, proc)
        return found

    def raylet(self) -> psutil.Process:
        """The node's raylet process."""
        for proc in self.descendants():
            try:
                if proc.name() == "raylet":
                    return proc
            except psutil.NoSuchProcess:
                continue
        raise ClusterError(f"no raylet under node {self.name} (pid {self.process.pid}):\n{self.log_tail()}")

    def kill_raylet(self) -> int:
        """SIGKILL the raylet, as a crashed machine would; ``ray start --block`` then stops the
        rest of the node. Returns the raylet's PID."""
        raylet = self.raylet()
        raylet.kill()
        return raylet.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM ``ray start`` (it stops its processes), then SIGKILL whatever it left."""
        self.descendants()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        _, alive = psutil.wait_procs([p for p in self.seen.values() if p.is_running()], timeout=5)
        for proc in alive:
            with suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)


class LoopbackCluster:
    """A head and ``num_workers`` worker nodes, each with ``cpus_per_node`` CPUs, on loopback.

    Attributes:
        address: the head's GCS address, for ``--address`` / ``ray.init``.
        env: the environment a driver or ``ray`` command needs: token auth on, with the
            cluster's token (``RAY_AUTH_TOKEN``, so ``~/.ray/auth_token`` is never read or written).
        head, workers: the nodes.
    """

    def __init__(
        self,
        num_workers: int = 1,
        cpus_per_node: int = 1,
        object_store_bytes: int = 200 * 1024**2,
        timeout: float = 90.0,
    ) -> None:
        self.num_workers, self.cpus_per_node = num_workers, cpus_per_node
        self.object_store_bytes, self.timeout = object_store_bytes, timeout
        subnet = random.randint(1, 254)
        self.ips = [f"127.0.{subnet}.{2 + i}" for i in range(num_workers + 1)]
        self.root = Path(tempfile.mkdtemp(prefix="rayc-"))  # short: socket paths live under it
        token = secrets.token_hex(32)
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env.update(
            RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1"
        )
        self.head: Node | None = None
        self.workers: list[Node] = []
        self.address = ""

    @property
    def nodes(self) -> list[Node]:
        return ([self.head] if self.head else []) + self.workers

    def __enter__(self) -> LoopbackCluster:
        with ExitStack() as undo:
            undo.callback(self.stop)
            self.start()
            undo.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the head, then the workers, and wait until every node is alive in the GCS."""
        ports = dict(zip(HEAD_PORTS, free_ports(len(HEAD_PORTS))))
        self.address = f"{self.ips[0]}:{ports['port']}"
        self.head = self._start_node(
            "head", self.ips[0], ["--head", "--include-dashboard", "false", *_flags(ports)]
        )
        for i, ip in enumerate(self.ips[1:], 1):
            ports = dict(zip(WORKER_PORTS, free_ports(len(WORKER_PORTS))))
            self.workers.append(
                self._start_node(f"worker{i}", ip, ["--address", self.address, *_flags(ports)])
            )
        self.wait_for_nodes(len(self.nodes))

    def _start_node(self, name: str, ip: str, flags: list[str]) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir()
        command = [
            RAY, "start", "--block", "--node-ip-address", ip, "--temp-dir", str(temp_dir),
            "--num-cpus", str(self.cpus_per_node), "--num-gpus", "0",
            "--object-store-memory", str(self.object_store_bytes),
            "--disable-usage-stats", *flags,
        ]  # fmt: skip
        with open(temp_dir / "ray_start.log", "wb") as log:
            process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        node = Node(name, ip, temp_dir, process)
        deadline = time.monotonic() + self.timeout
        while READY not in node.log_tail(100_000):
            if process.poll() is not None or time.monotonic() > deadline:
                node.stop()
                raise ClusterError(f"node {name} ({ip}) did not start:\n{node.log_tail()}")
            time.sleep(0.2)
        node.descendants()
        return node

    def status(self) -> subprocess.CompletedProcess[str]:
        """``ray status`` of this cluster, with its token."""
        return subprocess.run(
            [RAY, "status", "--address", self.address],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def wait_for_nodes(self, count: int) -> None:
        """Until ``ray status`` lists ``count`` active nodes."""
        deadline = time.monotonic() + self.timeout
        while True:
            proc = self.status()
            if proc.returncode == 0 and active_nodes(proc.stdout) == count:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{count} nodes expected at {self.address}; `ray status` said:\n{proc.stdout}{proc.stderr}"
                )
            time.sleep(1)

    def stop(self) -> None:
        """Stop the workers, then the head, by their PIDs; remove the temp dirs."""
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_processes(self) -> list[psutil.Process]:
        """Processes this cluster started that are still running (empty after ``stop``)."""
        procs = [psutil.Process(n.process.pid) for n in self.nodes if n.process.poll() is None]
        return procs + [p for n in self.nodes for p in n.seen.values() if p.is_running()]


def _flags(ports: dict[str, int]) -> list[str]:
    return [item for name, port in ports.items() for item in (f"--{name}", str(port))]


def active_nodes(status: str) -> int:
    """Number of nodes under ``Active:`` in ``ray status`` output."""
    lines = status.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Active:") + 1
    except StopIteration:
        return 0
    count = 0
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("node_"):
            break
        count += int(parts[0])
    return count


def stop_process_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and its group, if still running."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
