"""``accepted`` before events: the order of one WebSocket connection's outgoing frames.

A send's ``queued`` event is committed, and announced to every stream, before the send's caller
learns the command id; under load even ``succeeded`` can overtake the ``accepted`` frame. The id
is unknown until the send returns, so a connection cannot tell which event belongs to which of
its own sends in flight. The rule is therefore by time: a command event seen while sends (or
cancels) of this connection are in flight waits until every one of those has written its reply
(``accepted`` or ``error``). A send's events are only committed after the send began, so they are
always held behind its reply. Events leave in the order they came (cursors stay monotonic), so a
held command event also holds back whatever comes after it; events seen with nothing in flight
pass straight through. Pure state, no IO: the connection posts what the methods return.
"""

from __future__ import annotations

from collections import deque


class AcceptedFirst:
    def __init__(self) -> None:
        self._next_ticket = 0
        self._open: set[int] = set()  # tickets of replies not yet written
        self._held: deque[tuple[int, str]] = deque()  # (tickets below this must be done, frame)

    @property
    def held(self) -> int:
        return len(self._held)

    def begin(self) -> int:
        """A send or cancel starts; its events cannot exist yet. Returns its ticket."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self._open.add(ticket)
        return ticket

    def end(self, ticket: int) -> list[str]:
        """Its reply has been written: returns the frames that may follow now, in order."""
        self._open.discard(ticket)
        return self._release()

    def event(self, frame: str, *, command: bool) -> list[str]:
        """An event frame from the stream: returns the frames to write now, in order."""
        barrier = self._next_ticket if command else 0
        if not self._held and self._clear_below(barrier):
            return [frame]
        self._held.append((barrier, frame))
        return self._release()

    def _clear_below(self, barrier: int) -> bool:
        return not self._open or min(self._open) >= barrier

    def _release(self) -> list[str]:
        lowest_open = min(self._open) if self._open else None
        out: list[str] = []
        while self._held:
            barrier, frame = self._held[0]
            if lowest_open is not None and lowest_open < barrier:
                break
            self._held.popleft()
            out.append(frame)
        return out
