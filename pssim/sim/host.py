"""The host model: how psreal's run of a scenario on *this* machine differs from the cluster the
scenario describes (section 9 of the design; `pssim simulate --here`, `pssim compare`).

psreal squeezes a scenario's processes onto the machine it runs on. Predicting that run needs
what `psreal profile` measured of this host, and nothing here enters a target-cluster prediction
(`pssim.costs.build_costs` sets it only in the HERE view):

- **Cores** (`HostProcessors`): each process's host-side work runs on the core psreal pins it to
  (`pssim.layout.placement`), a CPU worker computes on it too, and the processes of one core share
  it as the kernel schedules threads (`SlicedCore`: one thread at a time, compute in turns of the
  scheduler's slice, woken work before compute but not inside a protected slice, a thread that
  goes on without sleeping keeps the core). Each core's and each process's CPU seconds are kept.
- **Messages** (`HostNetwork`): every message costs CPU at both ends (gloo's and the kernel's
  copies, psreal's threads: `msg_send(bytes)` on the sender's core, `msg_recv(bytes)` on the
  receiver's) while its bytes cross the links, plus a fixed overhead on its latency; it is
  delivered when the links have delivered it and both ends have done that work, and its receiver
  sees it once its thread gets its core (`HostNetwork.hand_over`: where a compute job holds the
  core, when that job's turn of one slice ends). One connection moves at most the transport's
  measured rate (the loopback cap).
- **The link arbiter**: psreal's `emulation: app` runs the links' fluid model in one thread at
  real-time priority on the last core; each pass of its loop costs the CPU measured after as long
  a sleep.

It plugs into `pssim.sim.resources` by subclassing Network, SharedProcessor and Processors
through their hooks; `build_host` makes the pair for `pssim.sim.simulate`. docs/profiling.md
says how each part is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from ..fluid import _DONE_TOL_S
from ..profile import sleep_bin
from ..records import cpu_seconds_by_role
from .resources import ARBITER, COMPUTE, ORDINARY, Message, Network, Processors, SharedProcessor

if TYPE_CHECKING:
    from ..costs import CostModel
    from ..layout import LinkLayout, Placement
    from ..scenario import Scenario


class HostNetwork(Network):
    """The links as psreal's transport drives them on this host: a message also costs CPU at its
    two ends (`enable_endpoint_cpu`), pays the transport's fixed overhead on its latency and moves
    at most at the transport's measured rate per connection."""

    def __init__(self, env: simpy.Environment, layout: LinkLayout, costs: CostModel) -> None:
        # a profile says how fast the host's transport moves one message at most: a message
        # emulated faster than that takes the host's time (psreal cannot deliver sooner)
        cap = costs.transport_bytes_per_s or np.inf
        super().__init__(env, layout, costs.msg_overhead_s, cap)

    def enable_endpoint_cpu(
        self,
        procs: Processors,
        send_cost: list[Any],
        recv_cost: list[Any],
        core_of: list[int | None],
        arbiter: tuple[int, Any] | None = None,
        busy_cost: tuple[Any, Any] | None = None,
        arbiter_by_sleep: Sequence[tuple[float, float]] = (),
    ) -> None:
        """Charge every message CPU at its two ends: `send_cost[src](bytes)` on the sender's core
        and `recv_cost[dst](bytes)` on the receiver's (`core_of[endpoint]`), concurrently with its
        transfer; and with `arbiter` = (core, cost), the link arbiter's work at real-time priority.
        With `busy_cost` = (send, recv): an end whose thread is still working on another message
        (awake, its caches warm) pays that cheaper cost instead, whatever its role: a process
        sends from one thread, and receives from each peer in a thread of that peer's own, so a
        send is cheap while the sender sends another, a receive while the receiver takes another
        message from the same peer. Each of those threads handles one message at a time. With
        `arbiter_by_sleep` ((longest sleep, CPU seconds) by increasing sleep), a pass of the
        arbiter costs what the profile measured for a pass after as long a sleep since its last
        (its caches go cold while it sleeps), else the `arbiter` cost's `a` whatever the sleep."""
        self._cpu = (procs, send_cost, recv_cost, core_of, arbiter)
        self._arb_sleep = tuple(g for g, _ in arbiter_by_sleep)
        self._arb_cpu = tuple(c for _, c in arbiter_by_sleep)
        self._busy_cost = busy_cost
        # each thread's latest CPU job: a message's (`_end_job`), or the one it `continues` from
        self._last_job: dict[Any, simpy.Event] = {}
        # where a compute job holds an endpoint's core, what waits for its thread (`hand_over`)
        self._core_of_ep = [procs.shared[c] if c is not None else None for c in core_of]
        self._pending = [None] * len(core_of)

    _cpu: tuple | None = None
    _busy_cost: tuple[Any, Any] | None = None
    _pending: list[list[tuple[Callable[[Any], None], Any]] | None] | None = None

    def hand_over(self, ep: int, fn: Callable[[Any], None], msg: Any) -> None:
        """Run `fn(msg)` once endpoint `ep`'s thread gets its core: at once, unless a compute job
        holds that core (`SlicedCore.turn_left`), then when that job's turn ends, together
        with, and after, everything handed to `ep` meanwhile.

        In psreal a delivered message reaches a role's main thread through a second wake-up (gloo's
        or the control client's thread reads it, then wakes the role's), and on a core that runs a
        compute-bound thread that wake-up waits for the compute thread's slice to end
        (benchmarks/busy_core_latency.py: 0.5 ms after the send beside no compute loop, 1.3 ms
        beside one). Without endpoint CPU (no profile, no cores) it is at once."""
        pending = self._pending
        if pending is None:
            fn(msg)
            return
        batch = pending[ep]
        if batch is not None:
            batch.append((fn, msg))
            return
        sp = self._core_of_ep[ep]
        wait = sp.turn_left() if sp is not None else 0.0
        if wait <= 0.0:
            fn(msg)
            return
        pending[ep] = [(fn, msg)]
        self.env.timeout(wait, ep).callbacks.append(self._handed_over)  # type: ignore[union-attr]

    def receiver(self, ep: int, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        return partial(self.hand_over, ep, fn)

    def _handed_over(self, ev: simpy.Event) -> None:
        ep = ev.value
        batch, self._pending[ep] = self._pending[ep], None  # type: ignore[index]
        for fn, msg in batch:  # type: ignore[union-attr]
            fn(msg)
        self._run_hooks()

    def continues(self, ep: int, job: simpy.Event) -> None:
        """Endpoint `ep`'s sending thread is the one that runs `job` (a worker's packing, on its
        main thread): the messages it sends next start as `job` ends, and so continue its turn
        on the core (`Processors.run`'s `after`)."""
        if self._cpu is not None:
            self._last_job[ep] = job

    def _end_job(self, ep: int, cost: Any, nbytes: float, thread: Any) -> simpy.Event:
        """The CPU job of one message end at endpoint `ep`, handled by `thread` (an endpoint's
        sending thread, or (endpoint, peer): its receiving thread for that peer). A thread
        handles one message at a time: the job starts once the thread's previous one has ended
        (a shard's replies to four pulls go out one after another, not all four at a quarter of
        the speed). A job that starts as the thread's previous one ends continues that one's
        turn on the core (`Processors.run`): a worker's pushes, sent straight after its packing,
        take turns with its core-mates' computation like the computation itself."""
        procs, core, work = self._cpu[0], self._cpu[3][ep], cost(nbytes)  # type: ignore[index]
        before = self._last_job.get(thread)
        if before is None or before.processed:
            ev = procs.run(core, work, after=before, who=ep)
        else:  # queued behind the thread's previous message
            ev = simpy.Event(self.env)

            def start(_e: simpy.Event) -> None:
                job = procs.run(core, work, after=before, who=ep)
                job.callbacks.append(lambda _j: _pass_turn(_j, ev).succeed())  # type: ignore[union-attr]

            before.callbacks.append(start)  # type: ignore[union-attr]
        self._last_job[thread] = ev
        return ev

    def _awake(self, thread: Any) -> bool:
        """Whether `thread` is still working on a message (its jobs run one after another, so
        it is while its latest has not ended)."""
        ev = self._last_job.get(thread)
        return ev is not None and not ev.processed

    def _gated(self, res: Sequence[int], nbytes: float, msg: Message) -> Message:
        """The fluid message for `msg` when both ends also pay CPU: `msg` is delivered once the
        link part (bytes + delay) and both CPU jobs are done."""
        _, send_cost, recv_cost, _, arbiter = self._cpu  # type: ignore[misc]
        src, dst = int(res[0]) // 2, (int(res[1]) - 1) // 2
        busy = self._busy_cost
        # the cheap cost where the thread that handles this end is awake with another message:
        # a process sends from its main thread, and receives each peer's messages in a thread of
        # that peer's own (psreal.transport.Transport.receive_from)
        awake = self._awake
        send = busy[0] if busy is not None and awake(src) else send_cost[src]
        recv = busy[1] if busy is not None and awake((dst, src)) else recv_cost[dst]
        jobs = [self._end_job(src, send, nbytes, src), self._end_job(dst, recv, nbytes, (dst, src))]
        if arbiter is not None:
            self._arbiter_wake(start=True)
        gate = [len(jobs) + 1, msg]
        for ev in jobs:
            ev.callbacks.append(lambda _e, g=gate: self._gate_part(g))  # type: ignore[union-attr]
        return (msg[0], self._gate_link_done, gate)

    _arb_at = -1.0
    _arb_end = float("-inf")  # when its latest pass ended
    _arb_sleep: tuple[float, ...] = ()
    _arb_cpu: tuple[float, ...] = ()
    _arb_busy = False  # a pass of the arbiter's loop is running
    _arb_pending = False  # something arrived meanwhile: one more pass once it ends

    def _arbiter_wake(self, start: bool = False) -> None:
        """psreal's link arbiter handles everything due at one instant in one pass of its loop:
        one pass of CPU (measured per wake-up) at real-time priority on its core. What arrives
        while a pass runs waits for the next one, which then handles all of it at once. A
        message's START (`start`) is a write of its sender to the arbiter's socket: of several
        sent at one instant, the first wakes the arbiter and the others arrive while it handles
        that one, so they take one more pass (completions and deliveries that fall due at one
        instant, which the arbiter computes itself, share a pass)."""
        now = self.env.now
        if now == self._arb_at:
            if start and self._arb_busy:
                self._arb_pending = True
            return
        if self._arb_busy:
            self._arb_pending = True
            return
        self._arb_pass(now)

    def _arb_pass(self, now: float) -> None:
        self._arb_at, self._arb_busy = now, True
        procs, arbiter = self._cpu[0], self._cpu[4]  # type: ignore[index]
        cost = arbiter[1].a
        if self._arb_cpu:  # by how long it slept since its last pass
            cost = self._arb_cpu[sleep_bin(self._arb_sleep, now - self._arb_end)]
        procs.run(arbiter[0], cost, ARBITER).callbacks.append(self._arb_pass_done)  # type: ignore[union-attr]

    def _arb_pass_done(self, _ev: simpy.Event) -> None:
        self._arb_busy = False
        self._arb_end = self.env.now
        if self._arb_pending:
            self._arb_pending = False
            self._arb_pass(self.env.now)

    def _gate_link_done(self, fluid_msg: Message) -> None:
        if self._cpu[4] is not None:  # type: ignore[index]
            self._arbiter_wake()  # the arbiter sends DONE once the latency has passed
        self._gate_part(fluid_msg[2])

    def _gate_part(self, gate: list) -> None:
        gate[0] -= 1
        if gate[0] == 0:
            self._deliver([gate[1]])

    def send(self, res: tuple[int, ...], nbytes: float, msg: Message) -> None:
        if self._cpu is not None:
            msg = self._gated(res, nbytes, msg)
        super().send(res, nbytes, msg)

    def send_many(self, res: np.ndarray, nbytes: list[float], msgs: list[Message]) -> None:
        if self._cpu is not None:
            msgs = [self._gated(r, n, m) for r, n, m in zip(res, nbytes, msgs, strict=True)]
        super().send_many(res, nbytes, msgs)

    def _completed(self, now: float) -> list[Message]:
        msgs = super()._completed(now)
        if msgs and self._cpu is not None and self._cpu[4] is not None:
            self._arbiter_wake()  # the arbiter computes the completions itself
        return msgs


def _pass_turn(src: simpy.Event, dst: simpy.Event) -> simpy.Event:
    """Give `dst` the turn `src` ended with (`SlicedCore`), for jobs that continue it."""
    turn = getattr(src, "turn", None)
    if turn is not None:
        dst.turn = turn  # type: ignore[attr-defined]
    return dst


# the slice left of a compute job that has run on past its slice with no other compute job waiting
_UNPROTECTED = float("inf")


class SlicedCore(SharedProcessor):
    """A core of this host shared by several threads, with strict priority classes.

    Jobs of the most urgent class present run; the others wait. ARBITER (psreal's link arbiter,
    real-time priority) preempts everything on its core. ORDINARY work (a message's CPU at either
    end, the codec and optimiser calls of a role woken by a message) preempts COMPUTE: a thread
    that wakes after a short sleep runs before a compute-bound one (the kernel's wake-up
    preemption). Within a class, jobs share egalitarianly (k jobs progress at 1/k each), except
    on a core with a time slice (`quantum_s` > 0, the OS scheduler's slice, see
    `pssim.profile.linux_base_slice_s`), where a kernel runs one thread at a time: ORDINARY jobs
    run one after another, first come first served, each to its end (woken work up to 1.2 ms runs
    through beside compute, benchmarks/wake_work.py; the message jobs here are shorter than a
    slice), and COMPUTE jobs take turns, first come first served, each running alone for at most
    one slice before going to the back of the queue. So two compute jobs (or two message jobs) of
    1 ms that arrive together end at 1 ms and 2 ms, not both at 2 ms as under even sharing. A job
    of w standalone seconds that runs alone takes w. Jobs that finish within `_DONE_TOL_S` of
    each other complete together, in arrival order. A compute job costs its standalone work
    whether or not other compute shares the core (measured in real runs: docs/profiling.md,
    "compute beside another worker").

    A thread that goes on working without sleeping keeps its turn: a job started by the thread
    whose compute job ended at this very instant (`run`'s `turn`, from the ended job's event)
    is a compute job too and runs first, for what was left of that slice, then takes turns like
    the rest. Only a thread woken from a sleep preempts compute (the kernel's wake-up
    preemption); one that has just been computing has no such claim (a worker packing and
    sending its gradient straight after its backward pass takes turns with its core-mate's
    computation, it does not interrupt it). Likewise a job started by the thread whose ORDINARY
    job ended at this instant (a shard going on from aggregating the clock's last push to its
    update and its reply, a thread sending one message after another) is an ORDINARY job that
    runs before those queued meanwhile, for what is left of that slice: that thread still has the
    core (none left: it queues like the rest).

    The kernel protects a thread's slice from the moment it gets the core (EEVDF's run to
    parity), and only that slice (benchmarks/woken_compute.py,
    reports/benchmarks/woken_compute.txt):
    - a thread woken while a compute job is within that slice waits for the slice to end, be it
      woken work (ORDINARY) or a computation (COMPUTE takes its turn in the queue);
    - a compute job whose slice ends with no other compute job waiting runs on unprotected: the
      next thread woken on its core takes the core at once, woken work and computation alike (a
      compute job arriving then runs first, with a slice of its own; the one it displaces is next,
      with a fresh slice), and a message handed over to a role there is seen at once
      (`turn_left` is 0).
    """

    def __init__(self, env: simpy.Environment, name: str, quantum_s: float = 0.0) -> None:
        super().__init__(env, name)
        # > 0: one job of a class at a time, compute in turns of a slice (class doc). A job's
        # slice left: a COMPUTE job whose slice ran out goes to the back; one running on alone
        # past it has _UNPROTECTED
        self.quantum = quantum_s
        # the compute job that had the core when last armed (in `jobs`)
        self._holder: list[Any] | None = None

    def run(
        self, work_s: float, priority: int = ORDINARY, turn: float | None = None
    ) -> simpy.Event:
        """A job of `work_s` seconds of standalone work of class `priority`; with `turn`, one
        whose thread goes on from its job of the same class that just ended, with `turn` seconds
        of that slice left: it runs first (see the class doc; none left: it queues like the rest).
        A job's event carries `turn` = (processor, end time, slice left, class) once it has ended
        (`HostProcessors.run`'s `after`)."""
        ev = simpy.Event(self.env)
        self._drain()
        job = [work_s, ev, priority, self.quantum]
        at = len(self.jobs)
        if turn is not None:
            if turn > _DONE_TOL_S:
                job[3], at = turn, 0
        elif priority == COMPUTE and self.quantum > 0.0:
            for i, j in enumerate(self.jobs):  # a woken computation: first only beside a compute
                if j[2] == COMPUTE:  # job run on past its slice, which is next with a fresh one
                    if j[3] == _UNPROTECTED:
                        j[3], at = self.quantum, i
                    break
        self.jobs.insert(at, job)
        self._arm()
        return ev

    def _active(self) -> list[list[Any]]:
        top = min(j[2] for j in self.jobs)
        if top == ORDINARY and self.quantum > 0.0:
            h = self._holder  # woken work waits for the end of a protected compute slice
            if h is not None and _DONE_TOL_S < h[3] < _UNPROTECTED:
                return [h]
        if self.quantum > 0.0 and top != ARBITER:
            for j in self.jobs:  # the first in the queue has the core
                if j[2] == top:
                    return [j]
        return [j for j in self.jobs if j[2] == top]

    def _left(self, active: list[list[Any]]) -> float:
        self._holder = active[0] if active[0][2] == COMPUTE else None
        if active[0][2] == COMPUTE and self.quantum > 0.0:
            return max(min(active[0][0], active[0][3]), 0.0)
        return super()._left(active)

    def turn_left(self) -> float:
        """How long the compute job that has the core now keeps it: the rest of its slice or of its
        work, whichever ends first (0 when no compute job runs, when it runs on past its slice
        unprotected, or without a slice). A thread woken now behind a wake-up it did not get
        first waits that long (`HostNetwork.hand_over`)."""
        if self.quantum <= 0.0 or not self.jobs:
            return 0.0
        self._drain()
        head = self._active()[0]
        if head[2] != COMPUTE or head[3] == _UNPROTECTED:
            return 0.0
        return max(min(head[0], head[3]), 0.0)

    def _ended(self, done: list[list[Any]]) -> None:
        now = self.env.now
        if any(j is self._holder for j in done):
            self._holder = None
        if self.quantum > 0.0:
            for j in done:
                if j[2] != ARBITER:
                    j[1].turn = (self, now, j[3], j[2])

    def _no_job_ended(self, active: list[list[Any]]) -> None:
        head = active[0]
        if head[2] == COMPUTE and self.quantum > 0.0 and head[3] <= _DONE_TOL_S:
            # its slice is over: to the back of the queue, with a new one, or on alone,
            # unprotected
            self.jobs = [j for j in self.jobs if j is not head]
            self._holder = None
            if any(j[2] == COMPUTE for j in self.jobs):
                head[3] = self.quantum
                self.jobs.append(head)
            else:
                head[3] = _UNPROTECTED
                self.jobs.insert(0, head)


class HostProcessors(Processors):
    """This host's cores (and GPUs) as psreal's processes use them (`pssim.layout.placement`):
    every process's host-side work runs on its core, a CPU worker computes on it too, and a core
    more than one thread uses (or every core, with `overlapping`: a process's receiving threads
    beside its main thread) is a SlicedCore. Keeps each core's and each process's CPU seconds."""

    def __init__(
        self,
        env: simpy.Environment,
        scn: Scenario,
        place: Placement,
        overlapping: bool = False,
        cpu_slice_s: float = 0.0,
    ) -> None:
        """`overlapping`: a process may run several jobs at once on its core (its receiver
        threads' message work beside its main thread), so every core is shared. `cpu_slice_s`:
        the OS scheduler's slice, with which compute jobs take turns on a shared core (0: they
        share it evenly)."""
        assert place.cores is not None and place.core_of_proc is not None
        self.env = env
        cpu = scn.cluster.workers.device == "cpu"
        n_cores = place.cores
        names = [f"core{c}" for c in range(n_cores)]
        dev0 = len(names)
        if not cpu:
            names += [f"gpu{d}" for d in range(place.n_devices)]
        self.names = names
        self.host_res = list(place.core_of_proc)
        self.compute_res = [
            core if cpu else dev0 + d
            for core, d in zip(place.core_of_proc, place.device_of_proc, strict=True)
        ]
        self.server_res = list(place.core_of_server or ())
        self.n_cores = n_cores
        self.cpu_work = [0.0] * n_cores  # seconds of work given to each core
        self.arbiter_work = 0.0  # ... of it, the link arbiter's
        self.role_work: dict[int, float] = {}  # ... by the process (endpoint) whose work it is
        users = self.users()
        self.shared = [
            (
                SlicedCore(env, names[r], cpu_slice_s)
                if r < n_cores and (len(users[r]) > 1 or overlapping)
                else SharedProcessor(env, names[r])
                if len(users[r]) > 1
                else None
            )
            for r in range(len(names))
        ]

    def run(
        self,
        res: int | None,
        work_s: float,
        priority: int = ORDINARY,
        after: simpy.Event | None = None,
        who: int | None = None,
    ) -> simpy.Event:
        """An event that fires when `work_s` seconds of standalone work of class `priority`
        (ARBITER, ORDINARY, COMPUTE; see SlicedCore) have been done on `res`. `after`: the
        job the same thread ran just before; if it was a compute job on the same core that ended
        at this instant, this one continues its turn as a compute job; if it was an ORDINARY job
        that did, an ORDINARY job goes on with its hold of the core (SlicedCore). `who`:
        the process whose work it is (an endpoint: worker processes 0..P-1, then the servers),
        for its CPU seconds (`role_work`)."""
        if work_s <= 0.0:
            return self.env.timeout(0.0)
        if res is None:
            return self.env.timeout(work_s)
        sp = self.shared[res]
        if res < self.n_cores:
            if priority == ARBITER:
                self.arbiter_work += work_s
            else:
                self.cpu_work[res] += work_s
                if who is not None:
                    self.role_work[who] = self.role_work.get(who, 0.0) + work_s
        if sp is None:
            return self.env.timeout(work_s)
        turn = getattr(after, "turn", None)
        if (
            turn is not None
            and turn[0] is sp
            and turn[1] == self.env.now
            and (turn[3] == COMPUTE or priority == ORDINARY)
        ):
            # after compute, a compute job; after woken work, woken work
            return sp.run(work_s, turn[3], turn[2])  # type: ignore[call-arg]
        return sp.run(work_s, priority)

    def cpu_seconds(self) -> dict[str, float]:
        """Modelled CPU seconds per core over the run (as psreal reports them), the arbiter's
        apart."""
        out = {f"core{c}": w for c, w in enumerate(self.cpu_work) if w > 0}
        if self.arbiter_work:
            out["arbiter"] = self.arbiter_work
        return out

    def cpu_seconds_by_role(self) -> dict[str, float]:
        """Modelled CPU seconds per process (as psreal reports them): `worker<p>` for worker
        process p, `server<s>` for shard s; message CPU is its end's process's, the arbiter's is
        not here."""
        n_procs = len(self.compute_res)
        return cpu_seconds_by_role(
            {
                (("worker", e) if e < n_procs else ("server", e - n_procs)): w
                for e, w in self.role_work.items()
                if w > 0
            }
        )


def build_host(
    env: simpy.Environment, scn: Scenario, costs: CostModel, place: Placement, layout: LinkLayout
) -> tuple[HostNetwork, HostProcessors]:
    """The network and processors of psreal's run on this host, with what the profile measured:
    each message's CPU at both ends (a shard's end may cost differently: its threads, its
    inbox; an end whose thread is awake with another message pays the busy cost), the arbiter's
    passes on the last core, the scheduler's slice."""
    net = HostNetwork(env, layout, costs)
    ops = costs.ops
    endpoint_cpu = "msg_send" in ops or "msg_recv" in ops
    procs = HostProcessors(env, scn, place, overlapping=endpoint_cpu, cpu_slice_s=costs.cpu_slice_s)
    if endpoint_cpu:
        zero = type(ops.get("msg_send") or ops["msg_recv"])()
        # psreal pins the link arbiter to the last core, at real-time priority
        arbiter = (place.cores - 1, ops["arbiter"]) if "arbiter" in ops and place.cores else None
        send, recv = ops.get("msg_send", zero), ops.get("msg_recv", zero)
        send_s, recv_s = ops.get("msg_send_server", send), ops.get("msg_recv_server", recv)
        n, n_servers = layout.n_procs, len(procs.server_res)
        busy = None
        if "msg_send_busy" in ops and "msg_recv_busy" in ops:
            busy = (ops["msg_send_busy"], ops["msg_recv_busy"])
        net.enable_endpoint_cpu(
            procs,
            [send] * n + [send_s] * n_servers,
            [recv] * n + [recv_s] * n_servers,
            [*procs.host_res, *procs.server_res],
            arbiter,
            busy,
            costs.arbiter_pass_s,
        )
    return net, procs
