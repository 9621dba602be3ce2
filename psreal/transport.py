"""Messages between roles over torch.distributed point-to-point (gloo), with link emulation.

A message is a fixed int64 header (`pssim.wire.HEADER_BYTES`: kind, sender endpoint, step, seq,
version, payload bytes, aux, aux2) followed by a uint8 payload, sent with `dist.isend` on CPU
tensors (CUDA tensors are staged through pinned host memory by the roles). A payload of at most
`INLINE_MAX` bytes travels in the same gloo message as its header, into a buffer the receiver
posted in advance; a larger one follows as a second gloo message, which gloo transfers only
once the receiver, having read the size, has posted its buffer (one extra round trip, small
beside the transfer). Bytes on the wire are counted as pssim.wire says, whatever the framing. With
`emulation: app` the sender first registers the message with the coordinator's link arbiter
(psreal/control.py); the send completes, and the receiver hands the message on, only when the
arbiter says the emulated link has delivered it. With `none` (and `kernel`, where the kernel
shapes the real sockets) a message is delivered when its bytes have arrived (plus the link latency
under `kernel` on a kernel without netem, see psreal/netem_kernel.py).

Each role runs one receiver thread per peer that may send to it; a thread blocks in `dist.recv`
on that peer and passes complete, delivered messages to a callback. STOP (not emulated, not
counted) ends a receiver thread.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pssim import wire

from . import msgtrace
from .control import ControlClient

TAG = 7
N_HEADER = wire.HEADER_BYTES // 8
INLINE_MAX = 256 * 1024  # payloads up to this size travel in the header's gloo message
DELIVERY_TIMEOUT_S = 300.0


class PeerLost(ConnectionError):
    """A peer's connection closed or broke: usually the consequence of that peer's own failure."""


# gloo's words for a peer that went away
_GLOO_PEER = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "Socket closed",
)


def is_peer_loss(exc: BaseException) -> bool:
    """Whether `exc` only says that another process went away (not a cause of its own)."""
    return isinstance(exc, ConnectionError) or (
        isinstance(exc, RuntimeError) and any(k in str(exc) for k in _GLOO_PEER)
    )


def short_error(exc: BaseException) -> str:
    """gloo's messages, without the source path and the boilerplate advice."""
    text = str(exc)
    m = re.search(r"\] (.*?)\. This is typically", text)
    return m.group(1) if m else text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Message:
    kind: int
    src: int  # sender endpoint
    step: int
    seq: int
    version: int
    aux: int
    aux2: int
    payload: torch.Tensor | None
    t_delivered: float
    nbytes: int  # bytes on the wire (header + payload)


class SendHandle:
    def __init__(self, works: list, transport: Transport, seq: int, dst: int) -> None:
        self.works, self.t, self.seq, self.dst = works, transport, seq, dst

    def wait(self) -> None:
        try:
            for w in self.works:
                w.wait()
        except RuntimeError as exc:
            if is_peer_loss(exc):
                raise PeerLost(
                    f"sending to endpoint {self.dst} failed: {short_error(exc)}"
                ) from exc
            raise
        msgtrace.mark("gloo_done", self.t.endpoint, self.seq)
        if self.t.control is not None and self.t.emulate:
            self.t.control.wait_done(self.t.endpoint, self.seq, DELIVERY_TIMEOUT_S)
        msgtrace.mark("handle_done", self.t.endpoint, self.seq)


class Transport:
    def __init__(
        self,
        endpoint: int,
        rank_of: Callable[[int], int],
        control: ControlClient | None,
        emulate: bool,
        latency_of: Callable[[int], float] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.rank_of = rank_of
        self.control = control
        self.emulate = emulate and control is not None
        # kernel emulation without netem: the link latency from a sender, added once its bytes
        # arrived
        self.latency_of = None if self.emulate else latency_of
        self._seq = itertools.count(1)
        self.bytes_sent = 0
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def send(
        self,
        dst: int,
        kind: int,
        step: int = 0,
        version: int = 0,
        payload: torch.Tensor | None = None,
        aux: int = 0,
        aux2: int = 0,
    ) -> SendHandle:
        seq = next(self._seq)
        n = 0 if payload is None else payload.numel()
        nbytes = wire.HEADER_BYTES + n
        msgtrace.mark("send", self.endpoint, seq, dst, kind, nbytes)
        if self.emulate:
            self.control.start_flow(dst, seq, nbytes)  # type: ignore[union-attr]
        header = torch.tensor(
            [kind, self.endpoint, step, seq, version, n, aux, aux2], dtype=torch.int64
        )
        rank = self.rank_of(dst)
        if 0 < n <= INLINE_MAX:  # one gloo message: the receiver has a buffer posted for it already
            first = torch.empty(wire.HEADER_BYTES + n, dtype=torch.uint8)
            first[: wire.HEADER_BYTES] = header.view(torch.uint8)
            first[wire.HEADER_BYTES :] = payload
            works = [dist.isend(first, rank, tag=TAG)]
        else:  # header, then the payload: its receive is posted only once the header says its size
            first = header.view(torch.uint8)
            works = [dist.isend(first, rank, tag=TAG)]
            if n:
                works.append(dist.isend(payload, rank, tag=TAG))
        self.bytes_sent += nbytes
        h = SendHandle(works, self, seq, dst)
        h.keep = (first, payload)  # type: ignore[attr-defined]  # alive until sent
        return h

    def stop(self, dst: int) -> None:
        """End the peer's receiver thread for us (a control message: not emulated, not counted)."""
        header = torch.tensor([wire.STOP, self.endpoint, 0, 0, 0, 0, 0, 0], dtype=torch.int64)
        dist.send(header, self.rank_of(dst), tag=TAG)

    def receive_from(
        self, src: int, on_message: Callable[[Message], None], pin: bool = False
    ) -> threading.Thread:
        """Start a thread that hands every delivered message from `src` to `on_message`."""

        def failed(exc: BaseException) -> None:
            self.errors.append(exc)
            on_message(Message(-1, src, 0, 0, 0, 0, 0, None, time.monotonic(), 0))

        def loop() -> None:
            rank = self.rank_of(src)
            try:
                while True:
                    # room for a header and an inline payload; gloo fills what was sent
                    first = torch.empty(
                        wire.HEADER_BYTES + INLINE_MAX, dtype=torch.uint8, pin_memory=pin
                    )
                    dist.recv(first, rank, tag=TAG)
                    kind, sender, step, seq, version, n, aux, aux2 = (
                        first[: wire.HEADER_BYTES].view(torch.int64).tolist()
                    )
                    msgtrace.mark("hdr", sender, seq, kind)
                    if kind == wire.STOP:
                        return
                    payload = None
                    if 0 < n <= INLINE_MAX:
                        payload = first[wire.HEADER_BYTES : wire.HEADER_BYTES + n]
                    elif n:
                        payload = torch.empty(n, dtype=torch.uint8, pin_memory=pin)
                        dist.recv(payload, rank, tag=TAG)
                    msg = Message(
                        kind,
                        sender,
                        step,
                        seq,
                        version,
                        aux,
                        aux2,
                        payload,
                        0.0,
                        wire.HEADER_BYTES + n,
                    )
                    if self.emulate:
                        # delivered when the arbiter says so; meanwhile this thread takes the next
                        # message's bytes, so messages in flight together share the emulated link
                        self.control.on_done(sender, seq, lambda m=msg: deliver(m))  # type: ignore[union-attr]
                        continue
                    if self.latency_of is not None:
                        time.sleep(self.latency_of(sender))
                    deliver(msg)
            except BaseException as exc:  # noqa: BLE001 - reported by the role's main loop
                failed(exc)

        def deliver(msg: Message) -> None:
            msg.t_delivered = time.monotonic()
            msgtrace.mark("deliver", msg.src, msg.seq, msg.kind)
            on_message(msg)

        if self.emulate:
            self.control.on_close(  # type: ignore[union-attr]
                lambda: failed(ConnectionError("the coordinator closed the control connection"))
            )

        t = threading.Thread(target=loop, name=f"recv-from-{src}", daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def receive_failed(self, src: int) -> Exception:
        """The exception a role raises when its receiver thread for `src` failed."""
        err = self.errors[-1] if self.errors else RuntimeError("unknown error")
        if is_peer_loss(err):
            return PeerLost(f"receiving from endpoint {src} failed: {short_error(err)}")
        return RuntimeError(f"receiving from endpoint {src} failed: {err!r}")

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
