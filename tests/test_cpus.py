"""cpus.py: threads started from one CPU, then given every CPU back."""
import os
import threading

import cpus


def affinity_in_thread():
    """Start a thread inside starting_on_this_cpu(); return its affinity before and after all_cpus()."""
    seen = {}

    def body():
        seen["started"] = os.sched_getaffinity(0)
        cpus.all_cpus()
        seen["widened"] = os.sched_getaffinity(0)

    with cpus.starting_on_this_cpu():
        seen["starter"] = os.sched_getaffinity(0)
        thread = threading.Thread(target=body)
        thread.start()
        thread.join(10)
    seen["starter_after"] = os.sched_getaffinity(0)
    return seen


def test_threads_start_on_the_starters_cpu_and_take_back_every_cpu():
    everything = os.sched_getaffinity(0)
    seen = affinity_in_thread()
    if len(everything) > 1:
        assert len(seen["starter"]) == 1 and seen["starter"] <= everything
        assert seen["started"] == seen["starter"]  # inherited at the thread's start
    else:
        assert seen["starter"] == everything  # one CPU: nothing to pin
    assert seen["widened"] == everything
    assert seen["starter_after"] == everything


def test_current_cpu_is_one_this_process_may_use():
    assert cpus.current_cpu() in os.sched_getaffinity(0)
