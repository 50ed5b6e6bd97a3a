"""The ordering rule of one WebSocket connection's frames, without IO (``ui_gateway.ordering``)."""

from __future__ import annotations

from ui_gateway.ordering import AcceptedFirst


def test_events_pass_straight_through_with_nothing_in_flight() -> None:
    order = AcceptedFirst()
    assert order.event("e1", command=True) == ["e1"]
    assert order.event("p1", command=False) == ["p1"]
    assert order.held == 0


def test_a_command_event_waits_for_every_reply_in_flight_when_it_came() -> None:
    order = AcceptedFirst()
    first, second = order.begin(), order.begin()
    assert order.event("queued", command=True) == []
    third = order.begin()  # began after the event: its reply does not hold it
    assert order.end(second) == []
    assert order.end(first) == ["queued"]
    assert order.end(third) == []
    assert order.held == 0


def test_frames_leave_in_the_order_they_came() -> None:
    order = AcceptedFirst()
    ticket = order.begin()
    assert order.event("c1", command=True) == []
    assert order.event("presence", command=False) == []  # behind c1, though free itself
    assert order.event("c2", command=True) == []
    assert order.held == 3
    assert order.end(ticket) == ["c1", "presence", "c2"]


def test_a_later_event_holds_only_on_the_replies_open_when_it_came() -> None:
    order = AcceptedFirst()
    first = order.begin()
    assert order.event("a", command=True) == []
    second = order.begin()
    assert order.event("b", command=True) == []
    assert order.end(first) == ["a"]  # b waits for the second reply too
    assert order.end(second) == ["b"]
