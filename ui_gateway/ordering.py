"""``accepted`` before events: the order of one WebSocket connection's outgoing frames.

A send's ``queued`` event is committed, and announced to every stream, before the send's caller
hears back; under load even ``succeeded`` can overtake the ``accepted`` frame. So the connection
names the command before it asks for it (the gateway chooses the command id), and an event of a
command whose reply (``accepted`` or ``error``) this connection has not yet written waits for
that reply. The same holds for a cancel and the events of the command it names. Events leave in
the order they came (cursors stay monotonic), so whatever comes after a held event waits with
it; since a held event's own commit is already done, the wait is the time its reply takes to be
written. Events of other commands, with nothing held, pass straight through. Pure state, no IO:
the connection posts what the methods return.
"""

from __future__ import annotations

from collections import Counter, deque


class AcceptedFirst:
    def __init__(self) -> None:
        self._open: Counter[str] = Counter()  # command id -> replies not yet written
        self._held: deque[tuple[str | None, str]] = deque()  # (command id, frame)

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def waiting(self) -> bool:
        """Replies are open, or frames held: an event must be looked at, not just passed on."""
        return bool(self._open or self._held)

    def begin(self, command_id: str) -> None:
        """A send (of a command with this id) or a cancel (of it) starts."""
        self._open[command_id] += 1

    def end(self, command_id: str) -> list[str]:
        """Its reply has been written: returns the frames that may follow now, in order."""
        self._open[command_id] -= 1
        if self._open[command_id] <= 0:
            del self._open[command_id]
        return self._release()

    def event(self, frame: str, command_id: str | None) -> list[str]:
        """An event frame (of the command ``command_id``, or of no command): the frames to
        write now, in order."""
        if not self._held and command_id not in self._open:
            return [frame]
        self._held.append((command_id, frame))
        return self._release()

    def _release(self) -> list[str]:
        out: list[str] = []
        while self._held and self._held[0][0] not in self._open:
            out.append(self._held.popleft()[1])
        return out
