"""shmbus: a shared-memory message bus for processes on one Linux host.

    import shmbus
    with shmbus.connect() as bus:
        bus.publisher("prices").publish(b"EURUSD 1.0841")
        with bus.subscribe("prices", start="earliest") as sub:
            for msg in sub:
                print(msg.id, bytes(msg.payload))

Payloads are memoryviews of the bus's shared memory, valid until the next receive on their
subscription (as in C++, where they are valid until the handler returns): bytes(msg.payload)
keeps a copy. docs/python.md has the rest.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Optional

from ._errors import (Corrupt, DaemonNotRunning, Error, Full, PermissionDenied, TooLarge,
                      TopicDeleted, TopicNotFound)
from ._shmbus import Bus, Loan, Message, Publisher, Subscription, WaitSet, version

__all__ = [
    "connect", "Bus", "Publisher", "Loan", "Subscription", "Message", "WaitSet", "version",
    "Error", "DaemonNotRunning", "TopicNotFound", "PermissionDenied", "Full", "TooLarge",
    "TopicDeleted", "Corrupt",
]


def connect(dir: Optional[str] = None) -> Bus:
    """Connects to the bus in `dir` (None: $SHMBUS_DIR, else the per-user default). A context
    manager: leaving the `with` block closes the connection."""
    return Bus(dir)


def _enter(self):
    return self


def _exit(self, *exc_info) -> None:
    self.close()


for _cls in (Bus, Publisher, Subscription, WaitSet):
    _cls.__enter__ = _enter
    _cls.__exit__ = _exit


def _loan_exit(self, exc_type, exc, tb) -> None:
    if not self.open:
        return
    if exc_type is None:
        self.commit()
    else:
        self.abandon()


Loan.__enter__ = _enter
Loan.__exit__ = _loan_exit


async def _wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _areceive(self: Subscription, timeout: Optional[float] = None) -> Optional[Message]:
    """receive() for asyncio: waits on a wait set's descriptor in the event loop, so other tasks
    run meanwhile. None if nothing came within `timeout` seconds (None: until something does)."""
    msg = self.receive(0)
    if msg is not None:
        return msg
    with WaitSet() as waits:
        waits.add(self)
        fd = waits.fileno()

        async def first() -> Optional[Message]:
            while True:
                if waits.wait(0):          # ready now; a wait that finds nothing arms the fd
                    found = self.receive(0)
                    if found is not None:
                        return found
                    continue
                await _wait_readable(fd)

        if timeout is None:
            return await first()
        try:
            return await asyncio.wait_for(first(), timeout)
        except asyncio.TimeoutError:
            return None


async def _aiter(self: Subscription) -> AsyncIterator[Message]:
    """`async for msg in sub`: the subscription's messages as they come; ends when its topic is
    deleted."""
    while True:
        try:
            msg = await _areceive(self)
        except TopicDeleted:
            return
        if msg is not None:
            yield msg


Subscription.areceive = _areceive
Subscription.__aiter__ = _aiter
