"""When the GC's full collections run (jobs/full_collections.py): pure logic, on a fake clock."""
import gc

from jobs.full_collections import GROWTH, MAX_WAIT, QUIET, THAW_INTERVAL, FullCollections


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def schedule():
    clock, runs = Clock(), []
    return clock, runs, FullCollections(clock=clock, collect=lambda thaw: runs.append((clock.now, thaw)))


def test_a_library_grown_by_a_quarter_is_collected_once_submits_pause():
    clock, runs, collections = schedule()
    assert collections.collect_if_due(10, last_submit=0.0) is False  # a few jobs: not yet
    assert collections.collect_if_due(10000, last_submit=clock.now) is False  # due, but a submit just ended
    clock.now += QUIET
    assert collections.collect_if_due(10000, last_submit=clock.now - QUIET) is True
    assert runs == [(clock.now, False)]  # what the last one left is frozen, not walked again
    grown = int(10000 * (1 + GROWTH)) - 1
    assert collections.collect_if_due(grown, last_submit=0.0) is False  # less than a quarter more
    assert collections.collect_if_due(grown + 1, last_submit=0.0) is True
    assert collections.collect_if_due(int((grown + 1) * (1 - GROWTH)), last_submit=0.0) is True  # removals count


def test_none_runs_while_a_submit_is_adding_its_jobs():
    clock, runs, collections = schedule()
    clock.now += 3600
    # The submit's own jobs made it due, long after the last submit ended.
    assert collections.collect_if_due(12000, last_submit=0.0, adding=True) is False
    assert collections.collect_if_due(12000, last_submit=clock.now, adding=False) is False
    clock.now += QUIET
    assert collections.collect_if_due(12000, last_submit=clock.now - QUIET, adding=False) is True


def test_submits_that_never_stop_wait_at_most_max_wait():
    clock, runs, collections = schedule()
    assert collections.collect_if_due(5000, last_submit=clock.now) is False
    clock.now += MAX_WAIT - 1
    assert collections.collect_if_due(5000, last_submit=clock.now) is False
    clock.now += 1
    assert collections.collect_if_due(5000, last_submit=clock.now, adding=True) is False  # never inside one
    assert collections.collect_if_due(5000, last_submit=clock.now) is True


def test_everything_frozen_too_is_collected_every_thaw_interval():
    clock, runs, collections = schedule()
    assert collections.collect_if_due(0, last_submit=0.0) is False
    clock.now += THAW_INTERVAL - 1
    assert collections.collect_if_due(0, last_submit=0.0) is False
    clock.now += 1
    assert collections.collect_if_due(0, last_submit=0.0) is True
    assert runs == [(clock.now, True)]  # removed jobs' objects, frozen, are freed by this one
    assert collections.collect_if_due(0, last_submit=0.0) is False  # the interval starts again
    assert collections.collect_if_due(5000, last_submit=0.0) is True
    assert runs[-1] == (clock.now, False)


def test_pythons_own_full_collections_are_off_while_any_schedule_holds_them():
    before = gc.get_threshold()
    first, second = FullCollections(), FullCollections()
    first.hold()
    second.hold()
    first.hold()  # twice: still one hold
    assert gc.get_threshold()[2] > 10**6 and gc.get_threshold()[:2] == before[:2]
    first.release()
    assert gc.get_threshold()[2] > 10**6  # the second still holds them
    second.release()
    second.release()
    assert gc.get_threshold() == before


def test_a_running_app_holds_them_and_hands_them_back(make_app):
    from swarm import wait_until

    automatic = gc.get_threshold()[2]
    manager = make_app().extensions["hashdrop"]
    wait_until(lambda: gc.get_threshold()[2] > 10**6, 10, "the app's periodic work did not take them over")
    manager.shutdown()
    assert gc.get_threshold()[2] == automatic


def test_a_frozen_cycle_is_freed_by_the_thawing_collection():
    from jobs.full_collections import collect_and_freeze
    import weakref

    class Node:
        pass

    node = Node()
    node.me = node  # a cycle: only the GC frees it
    gone = weakref.ref(node)
    collect_and_freeze(thaw=False)
    del node
    collect_and_freeze(thaw=False)
    assert gone() is not None  # frozen: not walked
    collect_and_freeze(thaw=True)
    assert gone() is None
    gc.unfreeze()
