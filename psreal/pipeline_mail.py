"""Where a pipeline stage's receiver threads leave activations and activation gradients.

Messages are keyed by (kind, step, microbatch) (the microbatch travels in the header's aux
field); `get` blocks until that message is delivered. A receiver failure wakes every waiter.
"""

from __future__ import annotations

import threading

from .transport import Message, PeerLost

TIMEOUT_S = 300.0


class Mailbox:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._box: dict[tuple[int, int, int], Message] = {}
        self._failed: Message | None = None

    def put(self, msg: Message) -> None:
        with self._cv:
            if msg.kind == -1:
                self._failed = msg
            else:
                self._box[(msg.kind, msg.step, msg.aux)] = msg
            self._cv.notify_all()

    def get(self, key: tuple[int, int, int], timeout: float = TIMEOUT_S) -> Message:
        with self._cv:
            ok = self._cv.wait_for(lambda: key in self._box or self._failed is not None, timeout)
            if self._failed is not None:
                raise PeerLost(
                    f"receiving from pipeline neighbour endpoint {self._failed.src} failed"
                )
            if not ok:
                raise TimeoutError(f"pipeline message {key} not delivered within {timeout:.0f} s")
            return self._box.pop(key)
