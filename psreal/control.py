"""The coordinator's control plane: link arbiter for `emulation: app`, progress and liveness.

Every role keeps one TCP connection to the coordinator (rank 0). Over it:

- START(src, dst, seq, bytes): a role is about to send a message. The arbiter adds it to the same
  max-min fluid model the simulator uses (`pssim.fluid.SmallFluid`, the plain-Python twin of the
  simulator's `FluidSystem`, over the scenario's NICs and
  fabric) and, when the last byte has drained plus the link latency, sends DONE(src, seq) to both
  ends. The tensors themselves travel over gloo at loopback speed meanwhile; the sender's send
  completes, and the receiver hands the message on, only at DONE. So every message takes the time
  the scenario's links give it, shared max-min fairly with everything else in flight.
- PROGRESS(rank, step): drives the progress bar and the stall watchdog.
- BYE(rank): a role ends normally. A connection that closes without BYE means the role died: the
  coordinator stops the run and names the role.
- ERROR(rank, consequence, text): a role failed with this cause. `consequence` marks failures
  that only follow another's (a peer's connection closed or reset), so that the coordinator can
  name the root cause first.
- BEAT(rank): a heartbeat. With `heartbeat_interval_s` a client sends one from a daemon thread at
  that interval for as long as its process lives, whatever its main thread is doing (a long
  compute step, a blocking receive). With `heartbeat_timeout_s` the server's thread notes, per
  connection, when it last read anything from it, and a connection silent for longer than that
  (a process stopped with SIGSTOP, or frozen) is put in `hung`. Silence is measured up to the
  moment the server's thread woke with everything that had arrived, so a coordinator that was
  itself descheduled for a while never mistakes that for its peers' silence.

Messages are fixed-size little-endian structs after a one-byte type.
"""

from __future__ import annotations

import heapq
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

import numpy as np

from pssim.fluid import SmallFluid
from pssim.layout import LinkLayout

from . import msgtrace

_HELLO, _START, _DONE, _PROG, _BYE, _ERR = b"H", b"S", b"D", b"P", b"B", b"E"
_BEAT = b"A"
_FMT = {
    _HELLO: struct.Struct("<ii"),  # rank, endpoint (-1 for none)
    _START: struct.Struct("<iiqq"),  # src endpoint, dst endpoint, seq, bytes
    _DONE: struct.Struct("<iq"),  # src endpoint, seq
    _PROG: struct.Struct("<ii"),  # rank, step
    _BYE: struct.Struct("<i"),  # rank
    _ERR: struct.Struct("<iBH"),  # rank, consequence flag, length of the utf-8 text that follows
    _BEAT: struct.Struct("<i"),  # rank
}


_SELECT_FD_LIMIT = 1000  # select(2) handles descriptors below FD_SETSIZE (1024)


def _try_realtime() -> bool:
    """Give the calling thread real-time priority where allowed, so its timers fire on time."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return True
    except (PermissionError, OSError, AttributeError):
        try:
            os.nice(-10)
        except OSError:
            pass
        return False


WAKE_LOG_MAX = 100_000


class ControlServer:
    def __init__(
        self,
        links: LinkLayout | None,
        bind: str = "127.0.0.1",
        advertise: str = "127.0.0.1",
        core: int | None = None,
        heartbeat_timeout_s: float | None = None,
    ) -> None:
        """`core`: pin the arbiter thread to this CPU (psreal pins it to the last one, where the
        simulator models its work). `heartbeat_timeout_s`: a role's connection silent for longer
        is put in `hung` (None: not watched)."""
        self.core = core
        self.heartbeat_timeout_s = heartbeat_timeout_s
        # (rank, seconds silent, last step reported or None) of each role that stopped responding
        self.hung: list[tuple[int, float, int | None]] = []
        self._next_beat_check = 0.0
        self.cpu_s = 0.0  # CPU seconds the control thread has used (read by psreal profile)
        self.wakeups = 0  # loop passes that started, completed or delivered a message
        # (seconds asleep before it, CPU seconds it took) of each such pass, the first WAKE_LOG_MAX
        self.wake_log: list[tuple[float, float]] = []
        self.links = links
        self.fluid = SmallFluid(links.caps, links.names) if links else None
        self.sock = socket.create_server((bind, 0))
        self.addr = (advertise, self.sock.getsockname()[1])
        # select(2) takes its timeout in microseconds; epoll and poll round it up to a whole
        # millisecond, which would deliver every message up to 1 ms late (twice: at its last byte
        # and after its latency). select only watches descriptors below FD_SETSIZE: past that
        # (hundreds of roles on one coordinator) the loop moves to the default selector.
        self.sel: selectors.BaseSelector = selectors.SelectSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.conns: dict[socket.socket, dict] = {}
        self.by_endpoint: dict[int, socket.socket] = {}
        self.unclaimed: dict[
            int, list[bytes]
        ] = {}  # DONEs for endpoints whose HELLO has not arrived
        self.deliveries: list[tuple[float, int, int, int]] = []  # (due, src, seq, dst)
        self.progress: dict[int, int] = {}
        self.last_progress = time.monotonic()
        self.errors: list[
            tuple[int, bool, str]
        ] = []  # (rank, consequence, "role i (rank N): cause") reported
        self.lost: list[int] = []  # ranks whose connection closed without BYE (the process died)
        self.finished: set[int] = set()
        self.realtime = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.flows_started = 0
        self.thread = threading.Thread(target=self._loop, name="psreal-control", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.lost or self.hung)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for s in list(self.conns):
            s.close()
        self.sock.close()

    # ----------------------------------------------------------------------------- loop
    def _loop(self) -> None:
        self.realtime = _try_realtime()
        if self.core is not None:
            try:
                os.sched_setaffinity(0, {self.core})  # this thread only
            except OSError:
                pass
        log = self.wake_log
        while not self._stop.is_set():
            self.cpu_s = cpu0 = time.thread_time()
            now = time.monotonic()
            due = 0.1
            if self.fluid is not None:
                nxt = self.fluid.next_completion()
                if nxt < np.inf:
                    due = min(due, nxt - now)
            if self.deliveries:
                due = min(due, self.deliveries[0][0] - now)
            starts: list[tuple[int, int, int, int]] = []
            events = self.sel.select(timeout=max(0.0, due))
            woke, n_wake = time.monotonic(), self.wakeups
            for key, _ in events:
                if key.data is None:
                    conn, _ = self.sock.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.setblocking(False)
                    self.conns[conn] = {"buf": b"", "rank": None, "ep": None, "seen": woke}
                    if (
                        isinstance(self.sel, selectors.SelectSelector)
                        and conn.fileno() >= _SELECT_FD_LIMIT
                    ):
                        self._to_default_selector()
                    self.sel.register(conn, selectors.EVENT_READ, 1)
                else:
                    self._read(key.fileobj, starts)  # type: ignore[arg-type]
            self._tick(time.monotonic(), starts)
            if self.wakeups != n_wake and len(log) < WAKE_LOG_MAX:
                log.append((woke - now, time.thread_time() - cpu0))
            if self.heartbeat_timeout_s is not None and woke >= self._next_beat_check:
                self._next_beat_check = woke + min(0.1, self.heartbeat_timeout_s / 10)
                self._check_beats(woke)

    def _check_beats(self, woke: float) -> None:
        """Put in `hung` each role whose connection said nothing for longer than the heartbeat
        timeout before `woke`, the instant select returned: whatever had arrived by then has been
        read in this pass, so a late pass of this thread is not taken for a role's silence."""
        limit = self.heartbeat_timeout_s
        assert limit is not None
        for st in self.conns.values():
            r = st["rank"]
            silent = woke - st["seen"]
            if r is None or silent <= limit or st.get("hung"):
                continue
            st["hung"] = True
            with self._lock:
                self.hung.append((r, silent, self.progress.get(r)))

    def _to_default_selector(self) -> None:
        """Move every registration to the platform's default selector (no descriptor limit,
        millisecond timeouts)."""
        old, self.sel = self.sel, selectors.DefaultSelector()
        for key in list(old.get_map().values()):
            self.sel.register(key.fileobj, key.events, key.data)
        old.close()

    def _tick(self, now: float, starts: list[tuple[int, int, int, int]]) -> None:
        fl, links = self.fluid, self.links
        if (
            starts
            or (self.deliveries and self.deliveries[0][0] <= now)
            or (fl is not None and fl.next_completion() <= now)
        ):
            self.wakeups += 1
        if fl is not None and links is not None:
            # completions at their exact instants, even if this thread woke late
            while True:
                t = fl.next_completion()
                if t > now:
                    break
                for src, seq, dst in fl.pop_completed(t):  # type: ignore[misc]
                    heapq.heappush(self.deliveries, (t + links.delay_of(src, dst), src, seq, dst))
                fl.recompute()
            for src, dst, seq, nbytes in starts:
                fl.add(now, links.resources_of(src, dst), float(nbytes), (src, seq, dst))
            if starts:
                fl.recompute()
        if self.deliveries and self.deliveries[0][0] <= now:
            out: dict[int, list[bytes]] = {}  # one send per endpoint for all that are due
            while self.deliveries and self.deliveries[0][0] <= now:
                due, src, seq, dst = heapq.heappop(self.deliveries)
                msgtrace.mark("done", src, seq, dst, due)
                msg = _DONE + _FMT[_DONE].pack(src, seq)
                out.setdefault(src, []).append(msg)
                out.setdefault(dst, []).append(msg)
            for ep, msgs in out.items():
                self._send_to(ep, b"".join(msgs))

    def _send_to(self, ep: int, msg: bytes) -> None:
        s = self.by_endpoint.get(ep)
        if s is None:  # its HELLO is not in yet: hold the message until it is, never drop it
            self.unclaimed.setdefault(ep, []).append(msg)
            return
        try:
            n = s.send(msg)  # non-blocking: a few bytes nearly always fit at once
            if n < len(msg):
                s.setblocking(True)
                s.sendall(msg[n:])
                s.setblocking(False)
        except BlockingIOError:
            s.setblocking(True)
            s.sendall(msg)
            s.setblocking(False)
        except OSError:
            pass

    def _read(self, s: socket.socket, starts: list[tuple[int, int, int, int]]) -> None:
        st = self.conns[s]
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._closed(s)
            return
        buf = st["buf"] + data
        now = st["seen"] = time.monotonic()
        i = 0
        while i < len(buf):
            kind = buf[i : i + 1]
            fmt = _FMT[kind]
            if len(buf) - i - 1 < fmt.size:
                break
            fields = fmt.unpack_from(buf, i + 1)
            if kind == _ERR:
                n = fields[2]
                if len(buf) - i - 1 - fmt.size < n:
                    break
                text = buf[i + 1 + fmt.size : i + 1 + fmt.size + n].decode("utf-8", "replace")
                with self._lock:
                    self.errors.append((fields[0], bool(fields[1]), text))
                i += 1 + fmt.size + n
                continue
            i += 1 + fmt.size
            if kind == _START:
                msgtrace.mark("start", *fields)
                self.flows_started += 1
                starts.append(fields)
            elif kind == _HELLO:
                st["rank"], st["ep"] = fields
                if fields[1] >= 0:
                    self.by_endpoint[fields[1]] = s
                    for held in self.unclaimed.pop(fields[1], []):
                        self._send_to(fields[1], held)
            elif kind == _PROG:
                self.progress[fields[0]] = fields[1]
                self.last_progress = now
            elif kind == _BYE:
                self.finished.add(fields[0])
            # _BEAT: nothing more to do, reading it updated st["seen"]
        st["buf"] = buf[i:]

    def _closed(self, s: socket.socket) -> None:
        st = self.conns.pop(s)
        self.sel.unregister(s)
        s.close()
        r = st["rank"]
        if r is not None and r not in self.finished:
            with self._lock:
                self.lost.append(r)


class ControlClient:
    """A role's end of the control connection."""

    def __init__(
        self,
        addr: tuple[str, int],
        rank: int,
        endpoint: int,
        heartbeat_interval_s: float | None = None,
    ) -> None:
        """`heartbeat_interval_s`: send a BEAT at this interval from a daemon thread (None: no
        heartbeat), until the connection closes or the process ends."""
        self.rank, self.endpoint = rank, endpoint
        self.sock = socket.create_connection(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send_lock = threading.Lock()
        self._cv = threading.Condition()
        self._done: set[tuple[int, int]] = set()
        self._callbacks: dict[tuple[int, int], Callable[[], None]] = {}  # on_done registrations
        self._on_close: list[Callable[[], None]] = []
        self._closed = False
        self._send(_HELLO + _FMT[_HELLO].pack(rank, endpoint))
        self.reader = threading.Thread(
            target=self._read_loop, name=f"psreal-ctl-{rank}", daemon=True
        )
        self.reader.start()
        if heartbeat_interval_s is not None:
            threading.Thread(
                target=self._beat_loop,
                args=(heartbeat_interval_s,),
                name=f"psreal-beat-{rank}",
                daemon=True,
            ).start()

    def _beat_loop(self, interval: float) -> None:
        beat = _BEAT + _FMT[_BEAT].pack(self.rank)
        while True:
            with self._cv:
                if self._closed:
                    return
            try:
                self._send(beat)
            except OSError:
                return
            time.sleep(interval)

    def _send(self, msg: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(msg)

    def start_flow(self, dst: int, seq: int, nbytes: int) -> None:
        self._send(_START + _FMT[_START].pack(self.endpoint, dst, seq, nbytes))

    def wait_done(self, src: int, seq: int, timeout: float) -> None:
        key = (src, seq)
        deadline = time.monotonic() + timeout
        with self._cv:
            while key not in self._done:
                left = deadline - time.monotonic()
                if self._closed:
                    raise ConnectionError("the coordinator closed the control connection")
                if left <= 0:
                    raise TimeoutError(
                        f"message {seq} from endpoint {src} not delivered within {timeout:.0f} s"
                    )
                self._cv.wait(left)
            self._done.discard(key)

    def on_done(self, src: int, seq: int, fn: Callable[[], None]) -> None:
        """Call fn() once message (src, seq) is delivered: now if it is, else from the reader
        thread.
        Unlike wait_done this never blocks, so a receiver can take the next message's bytes
        meanwhile."""
        key = (src, seq)
        with self._cv:
            if key not in self._done:
                self._callbacks[key] = fn
                return
            self._done.discard(key)
        fn()

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call fn() (from the reader thread) if the coordinator closes the connection."""
        with self._cv:
            if not self._closed:
                self._on_close.append(fn)
                return
        fn()

    def progress(self, step: int) -> None:
        self._send(_PROG + _FMT[_PROG].pack(self.rank, step))

    def error(self, text: str, consequence: bool = False) -> bool:
        """Report this role's failure; True if the report was sent."""
        data = text.encode("utf-8")[:60000]
        try:
            self._send(_ERR + _FMT[_ERR].pack(self.rank, int(consequence), len(data)) + data)
        except OSError:
            return False
        return True

    def bye(self) -> None:
        try:
            self._send(_BYE + _FMT[_BYE].pack(self.rank))
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _read_loop(self) -> None:
        buf = b""
        size = 1 + _FMT[_DONE].size
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cv:
                    self._closed = True
                    self._cv.notify_all()
                    hooks, self._on_close = self._on_close, []
                for fn in hooks:
                    fn()
                return
            buf += data
            n = len(buf) // size
            if n:
                ready: list[Callable[[], None]] = []
                with self._cv:
                    for i in range(n):
                        key = _FMT[_DONE].unpack_from(buf, i * size + 1)
                        msgtrace.mark("done_rx", *key)
                        fn = self._callbacks.pop(key, None)
                        if fn is None:
                            self._done.add(key)
                        else:
                            ready.append(fn)
                    self._cv.notify_all()
                for fn in ready:  # outside the lock, in delivery order
                    fn()
                buf = buf[n * size :]
