"""The ordering rule of one WebSocket connection's frames, without IO (``ui_gateway.ordering``)."""

from __future__ import annotations

from ui_gateway.ordering import AcceptedFirst


def test_events_pass_straight_through_with_nothing_in_flight() -> None:
    order = AcceptedFirst()
    assert order.event("e1", "c1") == ["e1"]
    assert order.event("p1", None) == ["p1"]
    assert order.held == 0 and not order.waiting


def test_an_event_waits_for_the_reply_of_its_own_command() -> None:
    order = AcceptedFirst()
    order.begin("c1")
    order.begin("c2")
    assert order.event("c1 queued", "c1") == []
    assert order.end("c2") == []  # another command's reply does not free it
    assert order.end("c1") == ["c1 queued"]
    assert order.held == 0


def test_events_of_other_commands_pass_while_a_reply_is_open() -> None:
    order = AcceptedFirst()
    order.begin("c1")
    assert order.event("c9 sent", "c9") == ["c9 sent"]  # not this connection's send
    assert order.event("presence", None) == ["presence"]
    assert order.end("c1") == []


def test_frames_leave_in_the_order_they_came() -> None:
    order = AcceptedFirst()
    order.begin("c1")
    assert order.event("c1 queued", "c1") == []
    assert order.event("presence", None) == []  # behind a held event, though free itself
    assert order.event("c9 sent", "c9") == []
    assert order.held == 3
    assert order.end("c1") == ["c1 queued", "presence", "c9 sent"]


def test_a_command_with_two_replies_open_waits_for_both() -> None:
    order = AcceptedFirst()
    order.begin("c1")  # its send
    order.begin("c1")  # and a cancel of it, both in flight
    assert order.event("c1 cancelled", "c1") == []
    assert order.end("c1") == []
    assert order.end("c1") == ["c1 cancelled"]
