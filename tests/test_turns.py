"""jobs.turns: a few job threads add their torrent at a time, none while a submit starts threads."""
import threading

from jobs.turns import AddTurns
from swarm import wait_until


def holders(turns, count):
    """count threads that each take a turn and hold it until `release` is set; and a list of
    those inside, and the event."""
    inside, release = [], threading.Event()

    def take(number):
        with turns:
            inside.append(number)
            release.wait(10)
            inside.remove(number)

    threads = [threading.Thread(target=take, args=(number,), daemon=True) for number in range(count)]
    for thread in threads:
        thread.start()
    return threads, inside, release


def test_no_more_than_the_turns_at_once_and_the_rest_follow():
    turns = AddTurns(at_once=2)
    threads, inside, release = holders(turns, 5)
    wait_until(lambda: len(inside) == 2, 5, "two turns were not taken")
    assert all(thread.is_alive() for thread in threads)  # three wait
    assert len(inside) == 2
    release.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)


def waiting(turns):
    """How many threads wait for a turn (the condition's waiters: pure logic, so looked at)."""
    return len(turns._changed._waiters)


def test_closed_turns_wait_for_the_block_to_end_and_held_ones_run_on():
    turns = AddTurns(at_once=1)
    first, inside, release_first = holders(turns, 1)
    wait_until(lambda: inside == [0], 5, "the first turn was not taken")
    later, later_inside, release_later = holders(turns, 2)
    wait_until(lambda: waiting(turns) == 2, 5, "the later threads did not wait")
    with turns.closed():
        release_first.set()  # a turn held before it closed ends as usual, and frees a turn
        first[0].join(5)
        assert not first[0].is_alive()
        wait_until(lambda: waiting(turns) == 2, 5, "a woken thread did not wait again")
        assert later_inside == []  # a free turn, but closed
    wait_until(lambda: later_inside, 5, "the turns did not open again")
    release_later.set()
    for thread in later:
        thread.join(5)
    assert not any(thread.is_alive() for thread in later)
