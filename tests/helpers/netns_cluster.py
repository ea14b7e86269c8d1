"""A real two-node Ray cluster on this machine, for the cluster tests: two network namespaces
joined by a veth pair, with private test addresses that exist only inside them (never this
machine's own), a Ray head in one and a Ray worker node in the other.

The filesystem is shared (the same venv serves both nodes; each node gets a session folder of
its own, since Ray's default /tmp/ray would be shared too). Every process started inside a
namespace is found again by ``ip netns pids`` and killed with SIGKILL, so nothing leaks, even
when a test fails. Ray's token authentication is on, with a token made for the test (never
the one in ~/.ray).
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD_IP, WORKER_IP = "10.213.0.1", "10.213.0.2"  # private, and only inside the namespaces
PORT = 6379  # each namespace has its own ports: no clash with anything on the machine
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0" would make a node take 127.0.0.1
RAY = str(Path(sys.executable).with_name("ray"))
# The head learns of a dead node within a few seconds (Ray's defaults: tens of seconds).
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000",
                      "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3"}


def why_no_namespaces():
    """Why this machine cannot hold the test cluster, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    return None


class NamespaceError(Exception):
    """An ``ip`` command failed: the namespaces cannot be made here."""


def _ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class TwoNodeCluster:
    """The two namespaces (``head``, ``worker``) and the Ray nodes started in them."""

    def __init__(self):
        tag = os.getpid()
        self.head, self.worker = f"exp-head-{tag}", f"exp-worker-{tag}"
        self.address = f"{HEAD_IP}:{PORT}"
        self.token = secrets.token_hex(32)
        self.folder = Path(tempfile.mkdtemp(prefix="exr-"))  # short: Ray's socket paths
        self._made = []

    # -- the namespaces ----------------------------------------------------------------------

    def create(self):
        """Make both namespaces and the veth pair between them; raise NamespaceError."""
        links = {self.head: ("eh", HEAD_IP), self.worker: ("ew", WORKER_IP)}
        for ns in links:
            _ip("netns", "add", ns)
            self._made.append(ns)
        tag = self.head.rpartition("-")[2]
        _ip("link", "add", f"eh{tag}", "type", "veth", "peer", "name", f"ew{tag}")
        for ns, (prefix, address) in links.items():
            link = f"{prefix}{tag}"
            _ip("link", "set", link, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def destroy(self):
        """Kill every process in both namespaces, delete them and the nodes' folders."""
        for ns in self._made:
            self.kill(ns)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self._made = []
        shutil.rmtree(self.folder, ignore_errors=True)

    def pids(self, ns):
        done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        return {int(pid) for pid in done.stdout.split()}

    def kill(self, ns, keep=()):
        """SIGKILL every process in ``ns`` but those in ``keep``; return when they are gone."""
        deadline = time.monotonic() + 30
        while True:
            victims = self.pids(ns) - set(keep)
            if not victims:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"processes in {ns} outlived SIGKILL: {sorted(victims)}")
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def in_namespace(self, ns, *command):
        return ["ip", "netns", "exec", ns, *command]

    # -- Ray ---------------------------------------------------------------------------------

    def env(self, **extra):
        """The environment of a node or a driver: the cluster's token; no loopback-only Ray."""
        env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ONLY}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token,
                   RAY_USAGE_STATS_ENABLED="0", **extra)
        return env

    def _ray_start(self, ns, name, cpus, *args, **env):
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))
        done = subprocess.run(
            self.in_namespace(ns, RAY, "start", f"--num-cpus={cpus}", "--disable-usage-stats",
                              "--object-store-memory=100000000", f"--temp-dir={folder}", *args),
            capture_output=True, text=True, env=self.env(**env), timeout=120)
        assert done.returncode == 0, f"ray start failed in {ns}:\n{done.stdout}\n{done.stderr}"

    def start_head(self, cpus=1):
        self._ray_start(self.head, "head", cpus, "--head", f"--node-ip-address={HEAD_IP}",
                        f"--port={PORT}", "--include-dashboard=false", **FAST_HEALTH_CHECKS)

    def start_worker(self, cpus=1):
        self._ray_start(self.worker, "worker", cpus, f"--address={self.address}",
                        f"--node-ip-address={WORKER_IP}")

    def running_a_run(self, ns):
        """Whether a process in ``ns`` is a Ray worker running a run (Ray names its process
        after the task it runs)."""
        for pid in self.pids(ns):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::run_on_a_node"):
                        return True
            except OSError:
                pass
        return False
