"""The futex table's room for thousands of threads (futexes.py), on the kernel this runs on."""
import threading

import pytest

import futexes


def test_the_futex_table_gets_about_a_slot_per_thread():
    slots = futexes.make_room(5000)
    if slots is None:
        pytest.skip("this kernel keeps one futex table for the whole machine (before Linux 6.16)")
    assert slots >= 8192  # the power of two at or above 5,000
    assert futexes.make_room(100) == slots  # never fewer than it has
    done = threading.Event()
    threads = [threading.Thread(target=done.wait) for _ in range(50)]
    for thread in threads:
        thread.start()
    done.set()
    for thread in threads:  # locks and events still work across the resized table
        thread.join(5)
        assert not thread.is_alive()


def test_a_runner_for_many_jobs_makes_room_for_their_threads():
    from jobs.runner import ThreadRunner

    runner = ThreadRunner(20000)
    if runner.futex_slots is None:
        pytest.skip("this kernel keeps one futex table for the whole machine (before Linux 6.16)")
    assert runner.futex_slots >= 32768
