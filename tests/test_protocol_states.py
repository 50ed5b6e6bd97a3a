from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import TERMINAL_STATES, CommandState, Verdict, decide

S = CommandState


def run(moves: list[CommandState]) -> list[CommandState]:
    """Apply a stream of requested moves to a new command; return the states it passed."""
    history = [S.QUEUED]
    for target in moves:
        if decide(history[-1], target).applies:
            history.append(target)
    return history


@given(st.lists(st.sampled_from(S), max_size=30))
def test_states_never_move_backwards_and_end_at_most_once(moves: list[CommandState]) -> None:
    history = run(moves)
    ranks = [state.rank for state in history]
    assert ranks == sorted(ranks)
    assert len(set(history)) == len(history)
    assert sum(state in TERMINAL_STATES for state in history) <= 1
    assert all(not s.is_terminal for s in history[:-1])


@given(st.lists(st.sampled_from(S), max_size=30))
def test_duplicated_inputs_change_nothing(moves: list[CommandState]) -> None:
    """Acks may arrive twice: every input doubled gives the same history as each once."""
    assert run([m for m in moves for _ in range(2)]) == run(moves)


@given(st.lists(st.sampled_from(S), max_size=30), st.lists(st.sampled_from(S), max_size=30))
def test_nothing_moves_a_finished_command(
    moves: list[CommandState], late: list[CommandState]
) -> None:
    history = run(moves)
    if history[-1].is_terminal:
        assert run(moves + late) == history


def test_happy_path() -> None:
    assert run([S.SENT, S.DELIVERED, S.SUCCEEDED]) == [S.QUEUED, S.SENT, S.DELIVERED, S.SUCCEEDED]


def test_out_of_order_acks() -> None:
    # The final ack overtakes PUBACK and `received`: both late arrivals are stale, not errors.
    assert decide(S.QUEUED, S.SUCCEEDED).applies
    assert decide(S.SUCCEEDED, S.DELIVERED).verdict is Verdict.FINISHED
    assert decide(S.DELIVERED, S.SENT).verdict is Verdict.STALE
    assert decide(S.DELIVERED, S.DELIVERED).verdict is Verdict.DUPLICATE


def test_operator_and_policy_outcomes_have_preconditions() -> None:
    assert decide(S.SENT, S.CANCELLED).applies
    assert decide(S.DELIVERED, S.CANCELLED).verdict is Verdict.REFUSED
    assert decide(S.DELIVERED, S.UNDELIVERABLE).verdict is Verdict.REFUSED
    assert decide(S.SENT, S.TIMED_OUT).verdict is Verdict.REFUSED
    assert decide(S.DELIVERED, S.TIMED_OUT).applies
    assert decide(S.SUCCEEDED, S.FAILED).verdict is Verdict.FINISHED
