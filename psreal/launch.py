"""Launching a real run: local processes (torch.multiprocessing, spawn) or torchrun, and the
coordinator.

`run_local` spawns one process per server shard and per worker process and makes this process
the coordinator (rank 0): it serves the control plane (link arbiter, progress, liveness), starts
every role at one instant, gathers the records and writes the result files through pssim's
`summarize`. Under torchrun every process calls `run_torchrun`, and rank 0 plays coordinator.

Failure handling (DESIGN.md section 5): a role that raises reports "role, rank: cause" to the
coordinator and exits non-zero; a role that dies silently is noticed by its exit code or its lost
control connection; a role that stops responding (SIGSTOP, a frozen process) is noticed by its
heartbeat: each role process sends one over its control connection every
`heartbeat_s / 10` (at most 0.5 s) from a daemon thread, and a connection silent for
`heartbeat_s` fails the run naming that role, its rank and the last step it reported. No progress
for `stall_timeout_s`, or a run longer than `timeout_s`, is a failure too, and so is a run whose
workers all crashed for good (scenario faults: nobody is left to train). On any failure the
coordinator terminates every process it started (SIGTERM and SIGCONT, so that a stopped process
acts on it too, then SIGKILL), prints the cause naming role and rank, and exits with code 1 (130
on Ctrl-C, 143 on SIGTERM). Children die with their parent (PR_SET_PDEATHSIG), so no process
outlives the run. Each role process carries its role's name, as ps and top show it: "psreal w1 r4"
is worker process 1, rank 4 (`name_process`).

Final parameters: `psreal run --save-params` (or `save_params=True` here) has every server send
its shard's parameters to the coordinator at the end, which writes them beside the result files
as `OUT/<scenario>/real/params.pt`: `torch.load` gives {parameter name: float32 tensor}, with the
names and shapes of `psreal.models.build_model(scn.model, seed).named_parameters()`, so
`model.load_state_dict(torch.load(path), strict=False)` restores the trained model (buffers aside).
`gather_params` assembles them from the shards (pssim.sharding's plan says which slice is where).
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pssim.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from pssim.records import Records, cpu_seconds_by_role, summarize
from pssim.results import write_results
from pssim.runplan import derive
from pssim.scenario import Scenario

from . import msgtrace
from .control import ControlClient, ControlServer
from .errors import EXIT_FAILED, RunFailed
from .roles import Layout, RoleContext, host_cores, layout_of, pin_role, set_threads
from .transport import Transport, is_peer_loss, short_error

DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_STALL_S = 120.0
# a role silent this long has stopped: its heartbeat thread beats every 0.5 s whatever the role
# does, and no normal run leaves a process without CPU for seconds (measured on 2 busy cores)
DEFAULT_HEARTBEAT_S = 10.0


def heartbeat_interval(heartbeat_s: float) -> float:
    """How often a role sends its heartbeat: ten per timeout, at most every 0.5 s."""
    return min(0.5, heartbeat_s / 10)


def resolve_device(scn: Scenario, requested: str | None) -> tuple[str, str | None]:
    """(device to use, warning). cuda falls back to cpu, saying so, when no GPU is present."""
    want = requested or scn.cluster.workers.device
    if want == "cuda" and not torch.cuda.is_available():
        return "cpu", "warning: cuda was asked for but no CUDA device is available; running on cpu"
    return want, None


def _prctl(option: int, arg: Any) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(option, arg)
    except OSError:
        pass


def _set_pdeathsig() -> None:
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def name_process(layout: Layout, rank: int) -> None:
    """Name this process after its role, as ps and top show it (/proc/PID/comm, 15 bytes at
    most): "psreal w1 r4" is worker process 1, rank 4; "psreal s0 r1" server 0, rank 1."""
    kind, i = layout.role_of(rank)
    _prctl(15, f"psreal {kind[0]}{i} r{rank}".encode()[:15])  # PR_SET_NAME


# ------------------------------------------------------------------------------- roles
def _role_body(
    scn: Scenario, layout: Layout, rank: int, device: str, shared_clock_t0: Any
) -> dict[str, Any]:
    """Everything a non-coordinator rank does after init_process_group (and `_pin`)."""
    obj: list[Any] = [None]
    dist.broadcast_object_list(obj, src=0)
    addr, emulate, save_params, transport_latency, beat_s = obj[0]
    dist.all_gather_object([None] * layout.world, socket.gethostname())
    kind, i = layout.role_of(rank)
    control = ControlClient(addr, rank, layout.endpoint_of_rank(rank), beat_s)
    try:
        plan = derive(scn)
        ep = layout.endpoint_of_rank(rank)
        latency_of = None
        if transport_latency:  # kernel emulation on a kernel without netem
            links = plan.links
            latency_of = lambda src: links.delay_of(src, ep)  # noqa: E731
        transport = Transport(ep, layout.rank_of_endpoint, control, emulate, latency_of)
        ctx = RoleContext(scn, layout, rank, device, plan, control, transport)
        if kind == "server":
            from .server import ServerRole

            role: Any = ServerRole(ctx, i)
        else:
            from .worker import WorkerRole

            role = WorkerRole(ctx, i)
        t0 = _start_together()
        cpu0 = _process_cpu_s()
        role.run()
        cpu_s = _process_cpu_s() - cpu0
        msgtrace.dump(f"rank{rank}")
        ctx.records.shift_time(t0)
        out = {
            "rank": rank,
            "records": ctx.records,
            "kind": kind,
            "peak_memory": role.peak_memory(),
            "cpu_s": cpu_s,
        }
        if save_params and kind == "server":
            out["params"] = role.final_params()
    except BaseException as exc:
        text = f"{layout.describe(rank, scn.pipeline.stages)}: {_cause(exc)}"
        if control.error(text, consequence=is_peer_loss(exc)):
            exc.psreal_reported = True  # type: ignore[attr-defined]  # the coordinator prints it
        raise
    control.bye()
    return out


def _process_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _pin(scn: Scenario, layout: Layout, rank: int) -> None:
    name_process(layout, rank)  # first: the threads started from here on inherit the name
    # before init_process_group: gloo's I/O threads inherit the affinity of the thread creating them
    set_threads()
    pin_role(scn, rank, layout, host_cores())
    # receiver threads must get the GIL quickly when a message lands while the main thread runs
    # Python between torch ops; the default 5 ms switch interval would delay messages by up to that
    sys.setswitchinterval(float(os.environ.get("PSREAL_SWITCH_INTERVAL", "0.0002")))


def _start_together() -> float:
    """Barrier, then every role starts at the coordinator's t0 (one host: one monotonic clock)."""
    dist.barrier()
    obj: list[Any] = [None]
    dist.broadcast_object_list(obj, src=0)
    t0, same_host = obj[0]
    if not same_host:
        return time.monotonic()
    delay = t0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return t0


TOKEN_ENV = "PSREAL_RUN_TOKEN"  # a torchrun run's token (every rank's environment gets the same)


def run_token_from_env() -> bytes | None:
    """The run token torchrun ranks share through their environment (None: not set)."""
    text = os.environ.get(TOKEN_ENV)
    return text.encode() if text else None


def prove_membership(token: bytes | None, rank: int, world: int) -> None:
    """Before any pickled object crosses the group, every rank shows it was given the run's
    token: HMAC-SHA256(token, rank) all-gathered as tensors (nothing unpickled) and checked for
    every rank. A process that joined the rendezvous without the token is refused by all, and
    no data is taken from it. No token (torchrun without PSREAL_RUN_TOKEN): nothing to check."""
    if token is None:
        return

    def digest(r: int) -> bytes:
        return hmac.new(token, f"psreal-rank-{r}".encode(), hashlib.sha256).digest()

    got = [torch.zeros(32, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(got, torch.tensor(list(digest(rank)), dtype=torch.uint8))
    bad = [r for r, t in enumerate(got) if not hmac.compare_digest(bytes(t.tolist()), digest(r))]
    if bad:
        raise RuntimeError(
            f"rank(s) {', '.join(map(str, bad))} did not prove they belong to this run "
            "(wrong or no run token): none of their data is read"
        )


def _cause(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _child_main(
    rank: int,
    world: int,
    init_method: str,
    scn_json: str,
    device: str,
    netns: tuple[str, str] | None = None,
    token: bytes | None = None,
) -> None:
    """Entry of a spawned role process; `netns` = (namespace path, interface) under kernel
    emulation; `token`: the run's (`prove_membership`)."""
    _set_pdeathsig()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C for everyone
    if netns is not None:  # before any socket or thread that must live in the namespace
        from .netem_kernel import enter_netns

        enter_netns(netns[0])
        os.environ["GLOO_SOCKET_IFNAME"] = netns[1]
    scn = Scenario.model_validate_json(scn_json)
    layout = layout_of(scn)
    try:
        _pin(scn, layout, rank)
        dist.init_process_group(
            "gloo",
            init_method=init_method,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=DEFAULT_STALL_S),
        )
        prove_membership(token, rank, world)
        result = _role_body(scn, layout, rank, device, None)
        dist.gather_object(result, None, dst=0)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001
        if not getattr(exc, "psreal_reported", False):  # else the coordinator names it, once
            print(
                f"error: {layout.describe(rank, scn.pipeline.stages)}: {_cause(exc)}",
                file=sys.stderr,
                flush=True,
            )
        os._exit(EXIT_FAILED)
    os._exit(0)


# -------------------------------------------------------------------------- coordinator
@dataclass
class _Coordinator:
    scn: Scenario
    layout: Layout
    device: str
    out: str
    emulate: bool
    gathered: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    control: ControlServer | None = None
    started: float = 0.0
    save_params: bool = False
    host: str = "127.0.0.1"  # local runs: where the roles reach the coordinator
    gloo_ifname: str | None = None  # kernel emulation: the bridge
    transport_latency: bool = False  # kernel emulation without netem: roles add the latency
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # a role silent this long has stopped responding
    token: bytes | None = None  # the run's token every rank proves it has (prove_membership)

    def body(self, init: dict[str, Any]) -> None:
        try:
            if self.gloo_ifname:
                os.environ["GLOO_SOCKET_IFNAME"] = self.gloo_ifname  # read when the group is made
            try:
                dist.init_process_group(
                    "gloo",
                    rank=0,
                    world_size=self.layout.world,
                    timeout=datetime.timedelta(seconds=DEFAULT_STALL_S),
                    **init,
                )
            finally:
                if self.gloo_ifname:
                    os.environ.pop("GLOO_SOCKET_IFNAME", None)
            prove_membership(self.token, 0, self.layout.world)
            links = derive(self.scn).links if self.emulate else None
            local = "store" in init  # run_local hands over its store; torchrun's env:// has none
            # the arbiter thread runs on the last core (as the simulator's host model places it)
            self.control = ControlServer(
                links,
                bind=self.host if local else "0.0.0.0",
                advertise=self.host if local else os.environ.get("MASTER_ADDR", "127.0.0.1"),
                core=sorted(os.sched_getaffinity(0))[-1],
                heartbeat_timeout_s=self.heartbeat_s,
            )
            self.control.start()
            setup = (
                self.control.addr,
                self.emulate,
                self.save_params,
                self.transport_latency,
                heartbeat_interval(self.heartbeat_s),
            )
            dist.broadcast_object_list([setup], src=0)
            hosts: list[Any] = [None] * self.layout.world
            dist.all_gather_object(hosts, socket.gethostname())
            dist.barrier()
            t0 = time.monotonic() + 0.05
            self.started = t0
            dist.broadcast_object_list([(t0, len(set(hosts)) == 1)], src=0)
            out: list[Any] = [None] * self.layout.world
            dist.gather_object({"rank": 0}, out, dst=0)
            self.gathered = out
            dist.destroy_process_group()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self.done.set()

    def results(self, wall_s: float) -> tuple[Path, dict[str, Any]]:
        scn = self.scn
        rec = Records(
            scn.cluster.workers.count,
            scn.pipeline.stages,
            scn.training.steps,
            scn.cluster.servers.count,
        )
        peak: dict[str, int] = {}
        P = scn.pipeline.stages
        place = derive(scn).placement(host_cores())
        cpu: dict[str, float] = {}
        by_role: dict[
            tuple[str, int], float
        ] = {}  # (worker, p) / (server, s): each role process's CPU
        for r in self.gathered[1:]:
            rec.merge(r["records"])
            kind, i = self.layout.role_of(r["rank"])
            by_role[(kind, i)] = float(r.get("cpu_s", 0.0))
            key = "server" if kind == "server" else ("worker" if P == 1 else f"stage{i % P}")
            peak[key] = max(peak.get(key, 0), int(r["peak_memory"]))
            if place.core_of_proc is not None:
                core = place.core_of_proc[i] if kind == "worker" else place.core_of_server[i]  # type: ignore[index]
                cpu[f"core{core}"] = cpu.get(f"core{core}", 0.0) + float(r.get("cpu_s", 0.0))
        if self.control is not None and self.emulate:
            cpu["arbiter"] = float(self.control.cpu_s)
        last = [rec.proc(w, P - 1) for w in range(scn.cluster.workers.count)]
        # each replica's last recorded loss (a worker that crashed for good stopped early)
        ends = [row[~np.isnan(row)][-1] for row in rec.loss[last] if (~np.isnan(row)).any()]
        final_loss = float(np.mean(ends)) if ends else float("nan")
        extra = {
            "backend": "real",
            "wall_time_s": wall_s,
            "final_loss": final_loss,
            "device": _device_name(self.device),
            "peak_memory_bytes": peak,
            "cpu_seconds": dict(sorted(cpu.items())),
            "cpu_seconds_by_role": cpu_seconds_by_role(by_role),
            "compute_source": "measured",
        }
        summary = summarize(scn, rec, extra)
        summary["emulation"] = scn.cluster.network.emulation
        summary["arbiter_realtime"] = bool(self.control and self.control.realtime)
        if self.control is not None and self.emulate:
            summary["arbiter_wakeups"] = int(self.control.wakeups)
            if os.environ.get(
                "PSREAL_ARBITER_LOG"
            ):  # each pass's sleep before it and CPU (psreal profile)
                Path(os.environ["PSREAL_ARBITER_LOG"]).write_text(json.dumps(self.control.wake_log))
        if scn.cluster.network.emulation == "kernel":
            summary["kernel_latency"] = "transport" if self.transport_latency else "netem"
        folder = write_results(self.out, scn, "real", rec, summary)
        if self.save_params:
            save_params_file(folder / PARAMS_FILE, gather_params(scn, self.gathered[1:]))
        return folder, summary


PARAMS_FILE = "params.pt"


def gather_params(scn: Scenario, results: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The whole model's parameters, {name: float32 tensor}, from the servers' `final_params`."""
    run = derive(scn)
    specs = run.workload.params
    flat = [torch.full((q.numel,), float("nan")) for q in specs]
    for r in results:
        for stage, values in r.get("params", {}).items():
            a, b = run.bounds[stage]
            pos = 0
            for q in run.shards.shards[r["rank"] - 1]:  # server s is rank 1 + s
                if a <= q.unit < b:
                    flat[q.param][q.offset : q.offset + q.numel] = values[pos : pos + q.numel]
                    pos += q.numel
            assert pos == values.numel(), (pos, values.numel())
    missing = [q.name for q, f in zip(specs, flat, strict=True) if torch.isnan(f).any()]
    if missing:
        raise RuntimeError(f"no server returned parameters for {', '.join(missing[:5])}")
    return {q.name: f.view(q.shape) for q, f in zip(specs, flat, strict=True)}


def save_params_file(path: Path, params: dict[str, torch.Tensor]) -> None:
    """torch.save into a temporary file beside `path`, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(params, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    import platform

    return f"cpu:{platform.processor() or platform.machine()} x{host_cores()}"


def local_rendezvous(host: str, world: int, timeout_s: float) -> tuple[dist.Store, str]:
    """Rank 0's rendezvous for processes it starts itself: (the store rank 0 passes to
    init_process_group, the tcp:// init_method the others use). The store listens before any
    other process starts, on a port the OS picks and that stays bound (a port found free and
    released first can be taken meanwhile by any other socket of the host: EADDRINUSE at
    init_process_group), and on `host` only. The others' tcp:// rendezvous keys the group under
    "default_pg" (torch.distributed.init_process_group), so rank 0's store gets that prefix
    too."""
    # the store listens on `host` only (TCPStore alone binds every interface): a socket bound
    # there is handed over to it
    sock = socket.create_server((host, 0))
    port = sock.getsockname()[1]
    store = dist.TCPStore(
        host,
        port,
        world,
        is_master=True,
        timeout=datetime.timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=sock.detach(),
    )
    return dist.PrefixStore("default_pg", store), f"tcp://{host}:{port}"


def _watch(
    coord: _Coordinator, procs: list[Any], timeout_s: float, stall_s: float, progress: Any
) -> None:
    """Watch the run from the main thread; raise RunFailed on the first failure."""
    t_start = time.monotonic()
    total = coord.layout.n_procs * coord.scn.training.steps
    while not coord.done.wait(0.05):
        now = time.monotonic()
        ctl = coord.control
        if _a_role_failed(coord, procs):
            raise RunFailed(_diagnose(coord, procs))
        if now - t_start > timeout_s:
            raise RunFailed(
                [f"error: the run exceeded its timeout of {timeout_s:.0f} s (psreal run --timeout)"]
            )
        if ctl is not None and coord.started and now > coord.started:
            done = sum(ctl.progress.values())
            if progress is not None:
                progress(done, total)
            if now - max(ctl.last_progress, coord.started) > stall_s:
                raise RunFailed([_stall_line(coord, ctl, stall_s)])
    if coord.error is not None:
        peer = is_peer_loss(coord.error)
        # the coordinator's gloo may notice a peer's death before its exit code or lost control
        # connection is in: wait for those, so that the peer is named and rank 0 is not blamed
        deadline = time.monotonic() + (_PEER_WAIT_S if peer else 0.0)
        while not _a_role_failed(coord, procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _a_role_failed(coord, procs):
            raise RunFailed(_diagnose(coord, procs))
        if peer:
            raise RunFailed(
                [
                    "error: a role went away without a named cause: the coordinator (rank 0) "
                    f"lost its connection to it ({short_error(coord.error)})"
                ]
            )
        raise RunFailed([f"error: coordinator (rank 0): {_cause(coord.error)}"])
    gone = _all_workers_gone(coord.scn)
    if gone is not None:
        raise RunFailed([gone])


_PEER_WAIT_S = 3.0


def _a_role_failed(coord: _Coordinator, procs: list[Any]) -> bool:
    """A role reported a failure, died, lost its control connection or stopped responding."""
    ctl = coord.control
    return (ctl is not None and ctl.failed) or any(pr.exitcode not in (None, 0) for _, pr in procs)


def _all_workers_gone(scn: Scenario) -> str | None:
    """The failure of a run whose workers all crashed for good (scenario faults), or None."""
    gone = {f.worker: f.at_step for f in scn.faults if f.restart_after_s is None}
    if len(gone) < scn.cluster.workers.count:
        return None
    which = ", ".join(f"worker {w} at step {k}" for w, k in sorted(gone.items()))
    return (
        f"error: every worker crashed for good (scenario faults: {which}); "
        f"none was left to finish the {scn.training.steps} steps, so the run has no result"
    )


def _stall_line(coord: _Coordinator, ctl: ControlServer, stall_s: float) -> str:
    lay, scn = coord.layout, coord.scn
    ranks = range(1 + lay.n_servers, lay.world)
    steps = {r: ctl.progress.get(r, 0) for r in ranks}
    low = min(steps.values())
    slowest = [
        f"{lay.describe(r, scn.pipeline.stages)} at step {low}" for r in ranks if steps[r] == low
    ]
    unfinished = [
        lay.describe(r, scn.pipeline.stages) for r in ranks if steps[r] < scn.training.steps
    ]
    return (
        f"error: no progress for {stall_s:.0f} s (psreal run --stall-timeout); "
        f"slowest: {', '.join(slowest[:4])} of {scn.training.steps}; "
        f"unfinished: {', '.join(unfinished[:8])}"
    )


_GRACE_S = 0.5  # how long a failure's own report and exit may trail its peers' complaints


def _diagnose(coord: _Coordinator, procs: list[Any]) -> list[str]:
    """Lines naming the root cause(s) of a failure: role, rank and cause, consequences last.

    A role that reports a cause of its own, or dies without a report (killed, os._exit), is a root
    cause; a role that failed only because a peer went away is a consequence, summarised in one
    line. Waits `_GRACE_S` first, so the culprit's exit or report is in.
    """
    time.sleep(_GRACE_S)
    lay, stages = coord.layout, coord.scn.pipeline.stages
    ctl = coord.control
    errors = list(ctl.errors) if ctl is not None else []
    lost = list(ctl.lost) if ctl is not None else []
    hung = list(ctl.hung) if ctl is not None else []
    reported = {r for r, _, _ in errors}
    roots = [f"error: {text}" for _, consequence, text in errors if not consequence]
    for rank, pr in procs:
        code = pr.exitcode
        if code not in (None, 0) and rank not in reported:
            how = (
                f"killed by signal {-code} ({signal.Signals(-code).name})"
                if code < 0
                else f"exited with code {code}"
            )
            roots.append(f"error: {lay.describe(rank, stages)}: {how} without reporting a cause")
            reported.add(rank)
    for rank, silent, step in hung:
        if rank not in reported:
            last = f"last step {step} of {coord.scn.training.steps}; " if step is not None else ""
            roots.append(
                f"error: {lay.describe(rank, stages)} stopped responding: no heartbeat for "
                f"{silent:.1f} s ({last}psreal run --heartbeat-timeout)"
            )
            reported.add(rank)
    for rank in lost:  # torchrun: no process handles, only the lost connection
        if rank not in reported:
            roots.append(
                f"error: {lay.describe(rank, stages)}: lost its connection to the coordinator "
                "(the process died)"
            )
            reported.add(rank)
    follow = [(r, text) for r, consequence, text in errors if consequence]
    if not roots and follow:
        roots.append(f"error: {follow[0][1]}")
        follow = follow[1:]
    if follow:
        roots.append(
            f"note: then {len(follow)} other role(s) stopped after losing a peer: "
            + ", ".join(lay.describe(r, stages) for r, _ in follow[:8])
        )
    return roots or ["error: the run failed without a reported cause"]


def _kill_all(procs: list[Any]) -> None:
    for _, p in procs:
        if p.is_alive():
            p.terminate()
            try:  # a stopped process (SIGSTOP) acts on SIGTERM once continued
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
    deadline = time.monotonic() + 3.0
    for _, p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for _, p in procs:
        if p.is_alive():
            p.kill()
            p.join(2.0)


def run_local(
    scn: Scenario,
    out: str,
    device: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stall_s: float = DEFAULT_STALL_S,
    progress: Any = None,
    save_params: bool = False,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
) -> tuple[Path, dict[str, Any]]:
    """Run the scenario with local processes; returns (result folder, summary). Raises RunFailed:
    on a failure, on Ctrl-C (code 130) and on SIGTERM (code 143), every process stopped."""
    layout = layout_of(scn)
    emulate = scn.cluster.network.emulation == "app"
    kernel = None
    if scn.cluster.network.emulation == "kernel":
        from .netem_kernel import IFNAME, KernelNet, check_kernel_emulation

        check_kernel_emulation(scn)  # exit code 2 with one line where it cannot run
        kernel = KernelNet.for_scenario(scn, layout).__enter__()  # closed in the finally below
    host = kernel.bridge_ip if kernel else "127.0.0.1"
    wall0 = time.perf_counter()
    store, init_method = local_rendezvous(host, layout.world, DEFAULT_STALL_S)
    ctx = mp.get_context("spawn")
    scn_json = scn.model_dump_json()
    procs = []
    coord = _Coordinator(
        scn,
        layout,
        device,
        out,
        emulate,
        save_params=save_params,
        host=host,
        gloo_ifname=kernel.bridge if kernel else None,
        transport_latency=kernel is not None and not kernel.netem,
        heartbeat_s=heartbeat_s,
        token=secrets.token_bytes(32),  # handed to the roles it spawns, never on the network
    )
    if kernel is not None and kernel.warning:
        print(kernel.warning, file=sys.stderr, flush=True)
    main = threading.current_thread() is threading.main_thread()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping = threading.Event()  # once set, a further Ctrl-C or SIGTERM cannot cut the clean-up

    def on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001
        if stopping.is_set():
            return
        stopping.set()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    if main:
        for sig in old:
            signal.signal(sig, on_signal)
    try:
        for rank in range(1, layout.world):
            netns = (kernel.ns_path(rank), IFNAME) if kernel else None
            pr = ctx.Process(
                target=_child_main,
                args=(rank, layout.world, init_method, scn_json, device, netns, coord.token),
                daemon=True,
            )
            pr.start()
            procs.append((rank, pr))
        th = threading.Thread(target=coord.body, args=({"store": store},), daemon=True)
        th.start()
        _watch(coord, procs, timeout_s, stall_s, progress)
        for _, pr in procs:
            pr.join(30)
        return coord.results(time.perf_counter() - wall0)
    except KeyboardInterrupt as exc:
        stopping.set()
        _kill_all(procs)
        if isinstance(exc, Terminated):
            raise RunFailed(["error: terminated (SIGTERM)"], EXIT_TERMINATED) from None
        raise RunFailed(
            ["error: interrupted; every psreal process was stopped"], EXIT_INTERRUPTED
        ) from None
    except RunFailed:
        stopping.set()
        _kill_all(procs)
        raise
    finally:
        stopping.set()
        _kill_all(procs)
        if coord.control is not None:
            coord.control.stop()
            msgtrace.dump("arbiter")
        if kernel is not None:
            kernel.close()
        if main:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def run_torchrun(
    scn: Scenario,
    out: str,
    device: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stall_s: float = DEFAULT_STALL_S,
    progress: Any = None,
    save_params: bool = False,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
) -> tuple[Path, dict[str, Any]] | None:
    """Called in every torchrun process: rank 0 coordinates and returns the results, others return
    None."""
    layout = layout_of(scn)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != layout.world:
        raise RunFailed(
            [
                f"error: torchrun started {world} processes but the scenario needs {layout.world} "
                f"(1 coordinator + {layout.n_servers} servers + {layout.n_procs} worker processes)"
            ],
            2,
        )
    if rank != 0:
        try:
            _pin(scn, layout, rank)
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=stall_s))
            prove_membership(run_token_from_env(), rank, world)
            result = _role_body(scn, layout, rank, device, None)
            dist.gather_object(result, None, dst=0)
            dist.destroy_process_group()
        except BaseException as exc:  # noqa: BLE001
            if getattr(exc, "psreal_reported", False):  # rank 0 names it
                raise RunFailed([]) from exc
            raise RunFailed(
                [f"error: {layout.describe(rank, scn.pipeline.stages)}: {_cause(exc)}"]
            ) from exc
        return None
    if scn.cluster.network.emulation == "kernel":
        raise RunFailed(
            [
                "error: cluster.network.emulation: kernel runs with the local launcher only "
                "(psreal run without torchrun); use app or none under torchrun"
            ],
            2,
        )
    emulate = scn.cluster.network.emulation == "app"
    wall0 = time.perf_counter()
    coord = _Coordinator(
        scn,
        layout,
        device,
        out,
        emulate,
        save_params=save_params,
        heartbeat_s=heartbeat_s,
        token=run_token_from_env(),
    )
    th = threading.Thread(target=coord.body, args=({},), daemon=True)
    th.start()
    _watch(coord, [], timeout_s, stall_s, progress)
    msgtrace.dump("arbiter")
    return coord.results(time.perf_counter() - wall0)
