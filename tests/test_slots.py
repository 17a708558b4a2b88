"""The download-slot queue, alone: pure bookkeeping, no libtorrent."""
import pytest

from jobs.slots import SlotQueue, moved_ranks


def test_a_slot_is_taken_while_one_is_free():
    slots = SlotQueue(2)
    assert slots.take("a") and slots.take("b")
    assert not slots.take("c")
    assert "a" in slots and "b" in slots and "c" not in slots and len(slots) == 2


def test_taking_again_keeps_the_slot_held():
    slots = SlotQueue(1)
    assert slots.take("a") and slots.take("a")
    assert len(slots) == 1


def test_a_freed_slot_goes_to_the_first_waiting_job():
    slots = SlotQueue(1)
    slots.take("a")
    assert slots.release("a", iter(["c", "d"])) == "c"
    assert "a" not in slots and len(slots) == 0  # the caller gives "c" the slot (take)
    assert slots.take("c") and not slots.take("d")


def test_releasing_without_a_slot_hands_nothing_on():
    slots = SlotQueue(1)
    slots.take("a")
    waiting = iter(["c"])
    assert slots.release("b", waiting) is None
    assert next(waiting) == "c"  # the waiting list was not consumed
    assert "a" in slots


def test_a_free_slot_with_nobody_waiting():
    slots = SlotQueue(1)
    slots.take("a")
    assert slots.release("a", []) is None
    assert slots.take("b")


def test_no_slot_at_all_queues_everyone():
    slots = SlotQueue(0)
    assert not slots.take("a")


ORDER = [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]


def placed(order, ranks):
    """The keys in queue order once the new ranks apply."""
    merged = {**dict(order), **ranks}
    return "".join(sorted(merged, key=merged.get))


@pytest.mark.parametrize("moving, where, expected", [
    (["c"], "top", "cabd"), (["b"], "bottom", "acdb"), (["c"], "up", "acbd"), (["a"], "up", "abcd"),
    (["b", "c"], "down", "adbc"), (["d"], 1, "adbc"), (["a", "d"], "top", "adbc"), (["b"], 99, "acdb"),
    (["c", "a"], "bottom", "bdac"), (["d"], "down", "abcd"), (["x"], "top", "abcd"),
])
def test_queue_moves_place_the_keys_as_transmission_does(moving, where, expected):
    ranks = moved_ranks(ORDER, moving, where)
    assert placed(ORDER, ranks) == expected
    if where not in ("up", "down"):  # those swap places with a neighbour
        assert set(ranks) <= set(moving)  # nothing else is written
