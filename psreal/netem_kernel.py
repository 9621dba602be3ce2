"""Kernel link emulation (`cluster.network.emulation: kernel`, DESIGN.md section 5).

An independent check of the link model: instead of psreal's app arbiter, the Linux kernel shapes
real TCP traffic. Each role process (server shard, worker process) lives in a network namespace
of its own, joined to a bridge in the root namespace by a veth pair; the coordinator (rank 0)
stays in the root namespace and talks over the bridge. Each role's NIC is shaped by tc:

- its egress on the namespace side of the veth: `netem delay <latency_us>` (root qdisc) feeding a
  `tbf rate <bandwidth_gbps>` (so a packet pays the sender's latency once, then the rate);
- its ingress on the bridge side of the veth (that device's egress): `tbf rate <bandwidth_gbps>`.

gloo (GLOO_SOCKET_IFNAME) and the rendezvous TCPStore run over these interfaces; spawned roles
enter their namespace with setns(2) before `init_process_group`. The transport runs without the
app arbiter (Transport emulate=False): a message is delivered when its bytes have arrived.

Differences from the app model (pssim.fluid), which this check is meant to expose: TCP shares a
link by its congestion control rather than exactly max-min; a message pays the sender's latency
(pssim: the larger of the two ends'; equal when worker and server latencies are equal) and TCP's
ACKs pay the receiver's on the way back; `network.fabric_gbps` is not emulated (refused).

Requirements: root, and `ip` and `tc` (iproute2) with netns, veth, bridge and tbf in the kernel.
netem is used where the kernel has it; where it does not (some VM kernels ship without
sch_netem), tbf still shapes the bandwidth and the transport adds each message's latency (pssim's
max of the two ends) when the message has arrived, with a warning. Where anything else is
missing, `check_kernel_emulation` stops the run before anything starts with one line,
`error: cluster.network.emulation: kernel needs ...`, and exit code 2 (the code for a scenario
that cannot run as given); `unavailable_reason()` gives tests the reason to skip with.

Clean-up: `KernelNet` is a context manager that removes every namespace, veth and the bridge it
made, on success and on failure, and also from an atexit hook; names carry the creating process's
id, so a later run removes what a killed launcher (SIGKILL) left behind.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import RunFailed

if TYPE_CHECKING:
    from pssim.scenario import Scenario

    from .roles import Layout

EXIT_UNAVAILABLE = 2
NETNS_DIR = "/run/netns"  # where `ip netns add` mounts them
IFNAME = "psnic0"  # the role's interface inside its namespace (GLOO_SOCKET_IFNAME)
CLONE_NEWNET = 0x40000000
MTU = 9000
_counter = itertools.count()


class KernelEmulationUnavailable(RunFailed):
    """Kernel emulation cannot run here (no root, no ip/tc, or the kernel refuses)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            [
                f"error: cluster.network.emulation: kernel needs {reason}; "
                "use emulation: app, which needs none of this"
            ],
            EXIT_UNAVAILABLE,
        )
        self.reason = reason


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=check)


def _first_line(exc: subprocess.CalledProcessError) -> str:
    text = (exc.stderr or exc.stdout or "").strip()
    return (
        f"`{' '.join(exc.cmd)}`: {text.splitlines()[0] if text else f'exit code {exc.returncode}'}"
    )


@lru_cache(maxsize=1)
def _probe() -> tuple[str | None, bool]:
    """(why kernel emulation cannot run here or None, whether netem is available); probed once."""
    if os.geteuid() != 0:
        return "root (it creates network namespaces, veth pairs and tc qdiscs)", False
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command (iproute2) on PATH", False
    tag = f"{os.getpid():x}"
    ns, a, b, br = f"psreal-probe-{tag}", f"psqa{tag}", f"psqb{tag}", f"psqr{tag}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", b, "netns", ns)
        _ip("link", "add", br, "type", "bridge")
        _tc(
            "qdisc",
            "add",
            "dev",
            a,
            "root",
            "handle",
            "1:",
            "tbf",
            "rate",
            "1gbit",
            "burst",
            "64kb",
            "limit",
            "1mb",
        )
        netem = _tc(
            "qdisc",
            "replace",
            "dev",
            a,
            "root",
            "handle",
            "1:",
            "netem",
            "delay",
            "100us",
            check=False,
        )
    except subprocess.CalledProcessError as exc:
        return (
            "network namespaces, veth pairs, a bridge and tc tbf, which failed here: "
            f"{_first_line(exc)}",
            False,
        )
    except OSError as exc:
        return f"network namespaces and tc, which failed here: {exc}", False
    finally:
        _ip("link", "del", a, check=False)
        _ip("link", "del", br, check=False)
        _ip("netns", "del", ns, check=False)
    return None, netem.returncode == 0


def unavailable_reason() -> str | None:
    """Why kernel emulation cannot run on this machine, or None if it can."""
    return _probe()[0]


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (sch_netem); without it latency goes to the
    transport."""
    return _probe()[1]


def check_kernel_emulation(scn: Scenario) -> None:
    """Stop before anything runs (KernelEmulationUnavailable, exit code 2) if kernel emulation
    cannot run."""
    reason = unavailable_reason()
    if reason is not None:
        raise KernelEmulationUnavailable(reason)
    if scn.cluster.network.fabric_gbps:
        raise RunFailed(
            [
                f"error: cluster.network.fabric_gbps: is not emulated by emulation: kernel (got "
                f"{scn.cluster.network.fabric_gbps}); use emulation: app"
            ],
            EXIT_UNAVAILABLE,
        )


def enter_netns(path: str) -> None:
    """Move the calling thread, and the threads it starts later, into the network namespace at
    `path`."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Remove namespaces and bridges that runs of processes no longer alive left behind."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(r"psreal-([0-9a-f]+)x\d+-\d+\b", line)
        if m and not _pid_alive(int(m.group(1), 16)):
            _ip("netns", "del", line.split()[0], check=False)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        m = re.match(r"\d+: (psbr([0-9a-f]+)x\d+)[:@]", line)
        if m and not _pid_alive(int(m.group(2), 16)):
            _ip("link", "del", m.group(1), check=False)


def _free_subnet() -> str:
    """A 10.x.y.0/24 not assigned on this host (prefix '10.x.y.')."""
    used = set(
        re.findall(r"inet 10\.(\d+)\.(\d+)\.", _ip("-4", "-o", "addr", "show", check=False).stdout)
    )
    start = os.getpid()
    for i in range(4096):
        k = (start + i) % 4096
        x, y = 200 + k // 256 % 50, k % 256
        if (str(x), str(y)) not in used:
            return f"10.{x}.{y}."
    raise RuntimeError("no free 10.x.y.0/24 subnet for the emulation bridge")


@dataclass
class Nic:
    bytes_per_s: float
    latency_s: float


@dataclass
class KernelNet:
    """Namespaces, veth pairs, bridge and qdiscs for one run; a context manager that removes
    them."""

    nics: dict[int, Nic]  # rank -> its NIC (every rank but the coordinator)
    netem: bool = True  # False: no netem in this kernel, the transport adds the latency on delivery
    tag: str = field(
        default_factory=lambda: f"{os.getpid():x}x{next(_counter) % 10}"
    )  # interface names <= 15 chars
    prefix: str = ""
    made_ns: list[str] = field(default_factory=list)
    made_links: list[str] = field(default_factory=list)
    _closed: bool = False

    @classmethod
    def for_scenario(cls, scn: Scenario, layout: Layout) -> KernelNet:
        w, s = scn.cluster.workers.nic, scn.cluster.servers.nic
        nics = {}
        for rank in range(1, layout.world):
            nic = s if layout.role_of(rank)[0] == "server" else w
            nics[rank] = Nic(nic.bytes_per_s, nic.latency_us * 1e-6)
        if layout.world > 250:
            raise RunFailed(
                [
                    "error: emulation: kernel supports up to 250 processes on one host "
                    f"(got {layout.world})"
                ],
                EXIT_UNAVAILABLE,
            )
        return cls(nics, netem=netem_available())

    @property
    def warning(self) -> str | None:
        if self.netem or all(n.latency_s == 0 for n in self.nics.values()):
            return None
        return (
            "warning: emulation: kernel: this kernel has no netem qdisc (sch_netem), so tbf "
            "shapes the bandwidth and the transport adds each message's link latency on delivery"
        )

    # ----------------------------------------------------------------------- names
    @property
    def bridge(self) -> str:
        return f"psbr{self.tag}"

    @property
    def bridge_ip(self) -> str:
        return f"{self.prefix}1"

    def ns(self, rank: int) -> str:
        return f"psreal-{self.tag}-{rank}"

    def ns_path(self, rank: int) -> str:
        return f"{NETNS_DIR}/{self.ns(rank)}"

    def ip_of(self, rank: int) -> str:
        return f"{self.prefix}{1 + rank}"

    # --------------------------------------------------------------------- set-up
    def __enter__(self) -> KernelNet:
        atexit.register(self.close)
        try:
            remove_stale()
            self.prefix = _free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge")
            self.made_links.append(self.bridge)
            _ip("link", "set", self.bridge, "mtu", str(MTU))
            _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for rank, nic in self.nics.items():
                self._add_role(rank, nic)
            self._check_reachable()
        except BaseException as exc:
            self.close()
            if isinstance(exc, subprocess.CalledProcessError):
                raise RunFailed(
                    [
                        "error: emulation: kernel: setting up the emulated network failed: "
                        f"{_first_line(exc)}"
                    ],
                    EXIT_UNAVAILABLE,
                ) from exc
            raise
        return self

    def _add_role(self, rank: int, nic: Nic) -> None:
        ns, outer, inner = self.ns(rank), f"psv{self.tag}r{rank}", f"psp{self.tag}r{rank}"
        _ip("netns", "add", ns)
        self.made_ns.append(ns)
        _ip(
            "link",
            "add",
            outer,
            "mtu",
            str(MTU),
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "mtu",
            str(MTU),
        )
        self.made_links.append(outer)
        _ip("link", "set", inner, "netns", ns)
        _ip("-n", ns, "link", "set", inner, "name", IFNAME)
        _ip("-n", ns, "addr", "add", f"{self.ip_of(rank)}/24", "dev", IFNAME)
        _ip("-n", ns, "link", "set", IFNAME, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        rate = f"{int(nic.bytes_per_s * 8)}bit"
        # burst: at least a few jumbo frames, else 1 ms at the rate; queue: 200 ms at the rate, so
        # TCP is paced by the rate rather than by tail drops and retransmission timeouts
        burst = str(max(4 * MTU, int(nic.bytes_per_s * 1e-3)))
        limit = str(max(1 << 20, int(nic.bytes_per_s * 0.2)))
        tbf = ("tbf", "rate", rate, "burst", burst, "limit", limit)
        add = ("-n", ns, "qdisc", "add", "dev", IFNAME)  # on the role's side of the pair
        if self.netem:
            delay = f"{max(0.0, nic.latency_s) * 1e6:.0f}us"
            _tc(*add, "root", "handle", "1:", "netem", "delay", delay, "limit", "100000")
            _tc(*add, "parent", "1:1", "handle", "10:", *tbf)
        else:
            _tc(*add, "root", "handle", "1:", *tbf)
        _tc("qdisc", "add", "dev", outer, "root", "handle", "1:", *tbf)

    def _check_reachable(self) -> None:
        """One role's namespace reaches the coordinator, and two roles reach each other (a host
        firewall filtering bridged traffic would otherwise show up later as a rendezvous
        timeout)."""
        ranks = sorted(self.nics)
        pairs = [(ranks[0], None)] + ([(ranks[0], ranks[1])] if len(ranks) > 1 else [])
        for src, dst in pairs:
            err = self._probe(src, dst)
            if err is not None:
                where = "the coordinator" if dst is None else f"rank {dst}"
                raise RunFailed(
                    [
                        f"error: emulation: kernel: rank {src}'s namespace cannot reach {where} "
                        f"over the bridge ({err}); is bridged traffic filtered "
                        "(net.bridge.bridge-nf-call-iptables)?"
                    ],
                    EXIT_UNAVAILABLE,
                )

    def _probe(self, src: int, dst: int | None) -> BaseException | None:
        """Connect from rank src's namespace to a listener in rank dst's (None: the root namespace).
        Each end is a thread of its own, since setns moves only the calling thread."""
        errors: list[BaseException] = []
        listening: list[socket.socket] = []
        ready = threading.Event()

        def listen() -> None:
            try:
                if dst is not None:
                    enter_netns(self.ns_path(dst))
                ls = socket.create_server((self.bridge_ip if dst is None else self.ip_of(dst), 0))
                ls.settimeout(5.0)
                listening.append(ls)
                ready.set()
                with ls:
                    ls.accept()[0].close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                ready.set()

        def connect() -> None:
            try:
                enter_netns(self.ns_path(src))
                socket.create_connection(listening[0].getsockname()[:2], timeout=5.0).close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        lt = threading.Thread(target=listen, daemon=True)
        lt.start()
        ready.wait(5.0)
        if listening:
            ct = threading.Thread(target=connect, daemon=True)
            ct.start()
            ct.join(10.0)
        lt.join(10.0)
        return errors[0] if errors else None

    # ------------------------------------------------------------------- clean-up
    def close(self) -> None:
        """Remove everything this run made (idempotent; also runs at exit)."""
        if self._closed:
            return
        self._closed = True
        for ns in self.made_ns:  # deleting a namespace destroys its veth end, and with it the pair
            _ip("netns", "del", ns, check=False)
        for link in reversed(self.made_links):
            _ip("link", "del", link, check=False)
        atexit.unregister(self.close)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def leftovers(self) -> list[str]:
        """Names of this run's namespaces and links that still exist (for tests)."""
        out = [
            ns
            for ns in (
                ln.split()[0]
                for ln in _ip("netns", "list", check=False).stdout.splitlines()
                if ln.strip()
            )
            if ns.startswith(f"psreal-{self.tag}-")
        ]
        links = _ip("-o", "link", "show", check=False).stdout
        out += re.findall(rf"\d+: (ps[bvp]\w*{re.escape(self.tag)}\w*)[:@]", links)
        return out
