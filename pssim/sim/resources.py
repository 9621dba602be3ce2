"""SimPy resources of the model: fluid-shared NICs and fabric (`Network`) and devices and cores (`Processors`).

`Network` wraps a `FluidSystem` over every NIC direction (and the fabric) and keeps the SimPy
clock and the fluid state in step: a message start queues a flow and, once per instant, one
recompute runs at the *end* of that instant (a SimPy event of lower priority than every ordinary
event due then, so all messages started at one instant share one recompute), and a timer fires at
the next completion. A message from a to b crosses a's egress, b's ingress and the fabric if any,
and is delivered `latency + per-message overhead` after its last byte drains (DESIGN.md section 4:
each message pays its latency once); deliveries due at the same instant share one SimPy timeout
and run in the order the messages were sent. A receiver that wants to act once on everything
that arrives at one instant asks for `after_arrivals`.

With a measured profile, a message also costs CPU at both ends (gloo's and the kernel's copies,
psreal's threads): `msg_send(bytes)` on the sender's core and `msg_recv(bytes)` on the receiver's,
as processor-sharing jobs that run while its bytes cross the links. The message is delivered when
the links have delivered it and both ends have done that work (`enable_endpoint_cpu`); its
receiver sees it once its thread gets its core (`Network.hand_over`: where a compute job holds
the core, when that job's turn of one scheduler slice ends).

`Processors` models each device and core as an egalitarian processor-sharing server (n jobs on one
each get 1/n of it): exactly the max-min allocation of single-resource flows, computed per
resource. A resource only one process ever uses (a worker's own device, a server's own core) can
never hold two jobs at once, since a process runs its jobs one after another, so its job is a
plain timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.core import NORMAL

from ..fluid import _DONE_TOL_S, FluidSystem
from ..profile import sleep_bin

if TYPE_CHECKING:
    from ..costs import CostModel, Placement
    from ..scenario import Scenario

# A message is a tuple or list: (delay after the last byte, deliver function, payload...); the
# network calls deliver(message) when it arrives.
Message = Sequence[Any]

# SimPy runs events due at one time in (priority, scheduling order); ordinary events have
# priority NORMAL (1). An event with a larger number runs after every ordinary event of its
# instant, including ones scheduled while that instant is being processed.
END_OF_INSTANT = NORMAL + 1


def at_end_of_instant(env: simpy.Environment, fn: Callable[[simpy.Event], None]) -> None:
    """Run `fn` once every ordinary event due now has run."""
    ev = simpy.Event(env)
    ev._ok = True  # a triggered event carrying no value, like a Timeout(0), but scheduled late
    ev._value = None
    ev.callbacks.append(fn)  # type: ignore[union-attr]
    env.schedule(ev, END_OF_INSTANT)


# Priority classes of work on a shared core or device (a lower number runs first; SharedProcessor)
ARBITER, ORDINARY, COMPUTE = 0, 1, 2


class Network:
    """Full-duplex NICs for every worker process and server, and the optional fabric.

    Endpoints are ints: worker processes 0..P-1, servers P..P+S-1. Resource 2e is endpoint e's
    egress, 2e+1 its ingress, the last one the fabric.
    """

    def __init__(
        self, env: simpy.Environment, scn: Scenario, n_procs: int, costs: CostModel
    ) -> None:
        S = scn.cluster.servers.count
        bw_w = scn.cluster.workers.nic.bytes_per_s
        bw_s = scn.cluster.servers.nic.bytes_per_s
        caps, names = [], []
        for p in range(n_procs):
            caps += [bw_w, bw_w]
            names += [f"worker{p}.egress", f"worker{p}.ingress"]
        for s in range(S):
            caps += [bw_s, bw_s]
            names += [f"server{s}.egress", f"server{s}.ingress"]
        self.fabric: int | None = None
        if scn.cluster.network.fabric_gbps:
            self.fabric = len(caps)
            caps.append(scn.cluster.network.fabric_gbps * 125e6)
            names.append("fabric")
        self.env = env
        self.n_procs = n_procs
        self.sys = FluidSystem(caps, names)
        lw = scn.cluster.workers.nic.latency_us * 1e-6
        ls = scn.cluster.servers.nic.latency_us * 1e-6
        ov = costs.msg_overhead_s
        # a message pays the larger endpoint latency once (costs.message_latency_s), plus overhead
        self.delay_w2w = lw + ov
        self.delay_w2s = max(lw, ls) + ov
        self.delay_s2s = ls + ov
        # with equal latencies (the usual case) every message has the same delay
        self._one_delay = self.delay_w2w == self.delay_w2s == self.delay_s2s
        self._recompute_due = False
        self._next_t = float("inf")  # next completion at the current rates
        self._timers: set[float] = set()  # times of completion timers not yet fired
        self._due_at = -1.0  # deliveries grouped by delay, for completions at time _due_at
        self._due: dict[float, list[Message]] = {}
        self.messages = 0
        self._hooks: list[Callable[[], None]] = []
        # a profile says how fast the host's transport moves one message at most: a message
        # emulated faster than that takes the host's time (psreal cannot deliver sooner)
        self.cap = costs.transport_bytes_per_s or np.inf

    def resources(self, src: int, dst: int) -> tuple[int, ...]:
        if self.fabric is None:
            return (2 * src, 2 * dst + 1)
        return (2 * src, 2 * dst + 1, self.fabric)

    def delay(self, src: int, dst: int) -> float:
        a, b = src >= self.n_procs, dst >= self.n_procs
        return self.delay_s2s if a and b else self.delay_w2s if a or b else self.delay_w2w

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
        """Charge every message CPU at its two ends: `send_cost[src](bytes)` on the sender's core and
        `recv_cost[dst](bytes)` on the receiver's (`core_of[endpoint]`), concurrently with its
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
        holds that core (`SharedProcessor.turn_left`), then when that job's turn ends, together
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

    def _handed_over(self, ev: simpy.Event) -> None:
        ep = ev._value
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
        now = self.env._now
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
        self._arb_end = self.env._now
        if self._arb_pending:
            self._arb_pending = False
            self._arb_pass(self.env._now)

    def _gate_link_done(self, fluid_msg: Message) -> None:
        if self._cpu[4] is not None:  # type: ignore[index]
            self._arbiter_wake()  # the arbiter sends DONE once the latency has passed
        self._gate_part(fluid_msg[2])

    def _gate_part(self, gate: list) -> None:
        gate[0] -= 1
        if gate[0] == 0:
            self._deliver([gate[1]])

    def send(self, res: tuple[int, ...], nbytes: float, msg: Message) -> None:
        """Start message `msg` over `res` (see `resources`): `msg[1](msg)` runs `msg[0]` seconds
        after its last byte has drained."""
        self.messages += 1
        if self._cpu is not None:
            msg = self._gated(res, nbytes, msg)
        self.sys.add(self.env._now, res, nbytes, msg, self.cap)
        if not self._recompute_due:
            self._recompute_due = True
            at_end_of_instant(self.env, self._recompute)

    def send_many(self, res: np.ndarray, nbytes: list[float], msgs: list[Message]) -> None:
        """Start several messages at once (`res`: one row of resources per message); the same as
        `send` one by one, in order."""
        self.messages += len(msgs)
        if self._cpu is not None:
            msgs = [self._gated(r, n, m) for r, n, m in zip(res, nbytes, msgs, strict=True)]
        self.sys.add_many(self.env._now, res, nbytes, msgs, self.cap)
        if not self._recompute_due:
            self._recompute_due = True
            at_end_of_instant(self.env, self._recompute)

    def routes(self, src: int | list[int], dst: int | list[int]) -> np.ndarray:
        """Resource rows of messages src -> dst (either side may be a list): for `send_many`."""
        src_l = src if isinstance(src, list) else [src]
        dst_l = dst if isinstance(dst, list) else [dst]
        k = max(len(src_l), len(dst_l))
        return np.array(
            [self.resources(src_l[i % len(src_l)], dst_l[i % len(dst_l)]) for i in range(k)],
            dtype=np.int64,
        )

    # ------------------------------------------------------------------------- fluid driver
    def _recompute(self, _ev: simpy.Event) -> None:
        self._recompute_due = False
        self.sys.advance(self.env.now)
        self.sys.recompute()
        self._arm()

    def _arm(self) -> None:
        t = self.sys.next_completion()
        self._next_t = t
        if t == float("inf") or t in self._timers:
            return
        self._timers.add(t)
        self.env.timeout(max(0.0, t - self.env.now), t).callbacks.append(self._on_timer)  # type: ignore[union-attr]

    def _on_timer(self, ev: simpy.Event) -> None:
        t = ev._value
        self._timers.discard(t)
        if t != self._next_t:
            return  # a later recompute moved the next completion; its own timer handles it
        now = self.env._now
        msgs = self.sys.pop_completed(now)
        if msgs and self._cpu is not None and self._cpu[4] is not None:
            self._arbiter_wake()
        if msgs:
            if now != self._due_at:
                self._due_at = now
                self._due = {}
            d0 = msgs[0][0]
            if self._one_delay:
                self._deliver_after(d0, msgs)
            else:
                for msg in msgs:
                    if msg[0] != d0:  # mixed delays: deliver each after its own
                        for msg2 in msgs:
                            self._deliver_after(msg2[0], [msg2])
                        break
                else:
                    self._deliver_after(d0, msgs)  # one delay for all
        if not self._recompute_due:
            self.sys.recompute()
            self._arm()

    def _deliver_after(self, delay: float, msgs: list[Message]) -> None:
        """Deliver `msgs` `delay` from now; one SimPy timeout per delay and instant."""
        if delay <= 0.0:
            self._deliver(msgs)
            return
        lst = self._due.get(delay)
        if lst is None:
            self._due[delay] = msgs
            self.env.timeout(delay, msgs).callbacks.append(self._run_deliveries)  # type: ignore[union-attr]
        else:
            lst += msgs

    def _run_deliveries(self, ev: simpy.Event) -> None:
        self._deliver(ev._value)

    def _deliver(self, msgs: list[Message]) -> None:
        """Hand over messages that arrive together, then run the receivers' `after_arrivals` hooks."""
        for msg in msgs:
            msg[1](msg)
        self._run_hooks()

    def _run_hooks(self) -> None:
        if self._hooks:
            hooks, self._hooks = self._hooks, []
            for fn in hooks:
                fn()

    def after_arrivals(self, fn: Callable[[], None]) -> None:
        """Run `fn` once every message arriving at this instant together with the current one
        has been handed over (a receiver acts on all of them at once, in the order it asked)."""
        self._hooks.append(fn)


def _pass_turn(src: simpy.Event, dst: simpy.Event) -> simpy.Event:
    """Give `dst` the turn `src` ended with (`SharedProcessor`), for jobs that continue it."""
    turn = getattr(src, "turn", None)
    if turn is not None:
        dst.turn = turn  # type: ignore[attr-defined]
    return dst


# the slice left of a compute job that has run on past its slice with no other compute job waiting
_UNPROTECTED = float("inf")


class SharedProcessor:
    """One device or core shared by several processes, with strict priority classes.

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
    parity), and only that slice (benchmarks/woken_compute.py, reports/benchmarks/woken_compute.txt):
    - a thread woken while a compute job is within that slice waits for the slice to end, be it
      woken work (ORDINARY) or a computation (COMPUTE takes its turn in the queue);
    - a compute job whose slice ends with no other compute job waiting runs on unprotected: the
      next thread woken on its core takes the core at once, woken work and computation alike (a
      compute job arriving then runs first, with a slice of its own; the one it displaces is next,
      with a fresh slice), and a message handed over to a role there is seen at once
      (`turn_left` is 0).
    """

    def __init__(self, env: simpy.Environment, name: str, quantum_s: float = 0.0) -> None:
        self.env = env
        self.name = name
        self.quantum = (
            quantum_s  # > 0: one job of a class at a time, compute in turns of a slice (class doc)
        )
        # [standalone seconds left, event, priority, slice left], in arrival order (a COMPUTE job
        # whose slice ran out goes to the back; one running on alone past it has _UNPROTECTED)
        self.jobs: list[list[Any]] = []
        self._t = 0.0  # when `jobs` were last drained
        self._next_t = float("inf")
        self._holder: list[Any] | None = (
            None  # the compute job that had the core when last armed (in `jobs`)
        )

    def run(
        self, work_s: float, priority: int = ORDINARY, turn: float | None = None
    ) -> simpy.Event:
        """A job of `work_s` seconds of standalone work of class `priority`; with `turn`, one
        whose thread goes on from its job of the same class that just ended, with `turn` seconds
        of that slice left: it runs first (see the class doc; none left: it queues like the rest).
        A job's event carries `turn` = (processor, end time, slice left, class) once it has ended
        (`Processors.run`'s `after`)."""
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

    def _drain(self) -> None:
        now = self.env.now
        if self.jobs and now > self._t:
            active = self._active()
            d = (now - self._t) / len(active)
            for j in active:
                j[0] -= d
                j[3] -= d
        self._t = now

    def _arm(self) -> None:
        if not self.jobs:
            self._next_t = float("inf")
            return
        active = self._active()
        self._holder = active[0] if active[0][2] == COMPUTE else None
        if active[0][2] == COMPUTE and self.quantum > 0.0:
            left = max(min(active[0][0], active[0][3]), 0.0)
        else:
            left = max(min(j[0] for j in active), 0.0) * len(active)
        t = self.env.now + left
        self._next_t = t
        self.env.timeout(left, t).callbacks.append(self._on_timer)  # type: ignore[union-attr]

    def turn_left(self) -> float:
        """How long the compute job that has the core now keeps it: the rest of its slice or of its
        work, whichever ends first (0 when no compute job runs, when it runs on past its slice
        unprotected, or without a slice). A thread
        woken now behind a wake-up it did not get first waits that long (`Network.hand_over`)."""
        if self.quantum <= 0.0 or not self.jobs:
            return 0.0
        self._drain()
        head = self._active()[0]
        if head[2] != COMPUTE or head[3] == _UNPROTECTED:
            return 0.0
        return max(min(head[0], head[3]), 0.0)

    def _on_timer(self, ev: simpy.Event) -> None:
        if ev._value != self._next_t:
            return  # superseded by a later arrival
        self._drain()
        active = self._active()
        k = len(active)
        done = [j for j in active if j[0] * k <= _DONE_TOL_S]
        if done:
            ids = {id(j) for j in done}
            self.jobs = [j for j in self.jobs if id(j) not in ids]
            now = self.env.now
            if any(j is self._holder for j in done):
                self._holder = None
            for j in done:
                if self.quantum > 0.0 and j[2] != ARBITER:
                    j[1].turn = (self, now, j[3], j[2])
                j[1].succeed()
        elif active[0][2] == COMPUTE and self.quantum > 0.0 and active[0][3] <= _DONE_TOL_S:
            head = active[0]  # its slice is over: to the back of the queue, with a new one, or
            self.jobs = [j for j in self.jobs if j is not head]  # on alone, unprotected
            self._holder = None
            if any(j[2] == COMPUTE for j in self.jobs):
                head[3] = self.quantum
                self.jobs.append(head)
            else:
                head[3] = _UNPROTECTED
                self.jobs.insert(0, head)
        self._arm()


class Processors:
    """Devices and host cores; one a single process uses runs its jobs as plain timeouts, a shared
    one is a SharedProcessor (priority classes, compute in turns of the scheduler's slice)."""

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
        self.env = env
        cpu = scn.cluster.workers.device == "cpu"
        names: list[str] = []
        self.compute_res: list[int | None] = []
        self.host_res: list[int | None] = []
        self.server_res: list[int | None] = []
        if place.cores is not None:
            names += [f"core{c}" for c in range(place.cores)]
            dev0 = None
            if not cpu:
                dev0 = len(names)
                names += [f"gpu{d}" for d in range(place.n_devices)]
            for p, d in enumerate(place.device_of_proc):
                core = place.core_of_proc[p]  # type: ignore[index]
                self.host_res.append(core)
                self.compute_res.append(core if cpu else dev0 + d)  # type: ignore[operator]
            self.server_res = list(place.core_of_server)  # type: ignore[arg-type]
        else:
            names += [("cpu" if cpu else "gpu") + str(d) for d in range(place.n_devices)]
            for d in place.device_of_proc:
                self.compute_res.append(d)
                self.host_res.append(d if cpu else None)
            self.server_res = [None] * scn.cluster.servers.count
        self.names = names
        # which processes use each resource: one user -> its jobs never overlap -> plain timeouts
        users: list[set[tuple[str, int]]] = [set() for _ in names]
        for p, (c, h) in enumerate(zip(self.compute_res, self.host_res, strict=True)):
            for r in (c, h):
                if r is not None:
                    users[r].add(("worker", p))
        for s, r in enumerate(self.server_res):
            if r is not None:
                users[r].add(("server", s))
        n_cores = place.cores or 0
        self.n_cores = n_cores
        self.cpu_work = [0.0] * n_cores  # seconds of work given to each core
        self.arbiter_work = 0.0  # ... of it, the link arbiter's
        self.role_work: dict[int, float] = {}  # ... by the process (endpoint) whose work it is
        self.shared: list[SharedProcessor | None] = [
            SharedProcessor(env, names[r], cpu_slice_s if r < n_cores else 0.0)
            if len(users[r]) > 1 or (overlapping and r < n_cores)
            else None
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
        (ARBITER, ORDINARY, COMPUTE; see SharedProcessor) have been done on `res`. `after`: the
        job the same thread ran just before; if it was a compute job on the same core that ended
        at this instant, this one continues its turn as a compute job; if it was an ORDINARY job
        that did, an ORDINARY job goes on with its hold of the core (SharedProcessor). `who`:
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
            return sp.run(
                work_s, turn[3], turn[2]
            )  # after compute, a compute job; after woken work, woken work
        return sp.run(work_s, priority)
