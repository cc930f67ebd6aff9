"""Invocation deadline behaviour no test held before (found by mutation testing spectra/deadline.py): the ten seconds
kept back from an invocation's time, never less than nothing left, no bound without one, the sixty seconds that make
a fair share of a run, and a collection cut before its next page once the time is up (the first page always comes)."""

from __future__ import annotations

import pytest

from spectra import deadline
from spectra.deadline import OutOfTime, fair, lasting, left, within

pytestmark = pytest.mark.unit


@pytest.fixture
def clock(monkeypatch):
    """The deadline's clock, moved by the test: ``clock[0]`` seconds."""
    now = [1000.0]
    monkeypatch.setattr(deadline, "_clock", lambda: now[0])
    return now


def test_ten_seconds_of_the_invocation_are_kept_back_for_what_follows(clock):
    """An invocation with 90 s left gives its work 80 s, counted down by the clock."""
    with lasting(90.0):
        assert left() == 80.0
        clock[0] += 30.0
        assert left() == 50.0


def test_an_invocation_with_less_than_the_margin_leaves_nothing_not_a_negative_bound_start(clock):
    """5 s left (under the 10 s margin) leaves the work 0 s, not -5 s; 10.5 s leaves 0.5 s."""
    with lasting(5.0):
        assert left() == 0.0
    with lasting(10.5):
        assert left() == 0.5


def test_without_a_bound_nothing_is_left_to_count_and_the_bound_ends_with_its_block(clock):
    """Outside ``lasting`` and inside ``lasting(None)`` left() is None; after a bounded block it is None again."""
    assert left() is None
    with lasting(None):
        assert left() is None
    with lasting(70.0):
        assert left() == 60.0
    assert left() is None


def test_sixty_seconds_left_at_the_start_is_a_fair_share_of_a_run():
    """fair: 60 s or more, or no bound at all; 59.9 s is not."""
    assert fair(60.0) is True
    assert fair(61.0) is True
    assert fair(None) is True
    assert fair(59.9) is False
    assert fair(0.0) is False


def test_the_first_page_always_comes_and_the_next_is_refused_once_time_is_up(clock):
    """With no time left the first item still comes; asking for the second raises OutOfTime with the message."""
    with lasting(10.0):  # 0 s left
        pages = within(iter(["first", "second"]), "collect j_1")
        assert next(pages) == "first"
        with pytest.raises(OutOfTime, match="collect j_1"):
            next(pages)


def test_pages_keep_coming_while_time_is_left_and_stop_when_it_reaches_zero(clock):
    """With 1 s left every page comes; once the clock reaches the bound exactly, the next page is refused."""
    with lasting(11.0):
        pages = within(iter(range(5)), "cut")
        assert [next(pages), next(pages), next(pages)] == [0, 1, 2]
        clock[0] += 1.0  # exactly at the bound: 0 s left
        with pytest.raises(OutOfTime):
            next(pages)


def test_all_pages_come_without_a_bound(clock):
    """Without ``lasting`` nothing is cut, however long."""
    clock[0] += 10_000.0
    assert list(within(iter([1, 2, 3]), "never")) == [1, 2, 3]


def test_out_of_time_tells_its_code():
    """OutOfTime is told as out_of_time."""
    assert OutOfTime("x").code == "out_of_time"
