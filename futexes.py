"""Room in the kernel's futex table for a process of thousands of threads.

Every lock, condition and event a thread waits on is a futex, and Linux finds a futex's waiters
by hashing its address into a table of slots, each a list it walks on every wake-up. Since Linux
6.16 a threaded process has a table of its own, sized for the CPUs it may use, not for its
threads: on a 2-CPU machine, 16 slots. With 10,000 job threads asleep, each slot listed some 600
waiters, and every lock released and every hand-over of the GIL walked one of those lists:
1,000 thread starts took 277 ms (p50) instead of 52, and a submit spent most of its time in the
kernel (docs/design.md, "The kernel's futex table"). So the job runner asks for a slot per
thread it may start (prctl PR_FUTEX_HASH). Older kernels answer EINVAL and keep one table for
the whole machine, sized by its CPUs (256 slots each), which is not the 16-slot trap.
"""
import ctypes
import os

PR_FUTEX_HASH = 78
PR_FUTEX_HASH_SET_SLOTS = 1
PR_FUTEX_HASH_GET_SLOTS = 2
MIN_SLOTS = 1024
MAX_SLOTS = 65536  # 64 bytes of kernel memory each: 4 MiB at most


def make_room(threads):
    """Give this process's futex table about a slot per thread (a power of two between MIN_SLOTS
    and MAX_SLOTS), never fewer than it has; return its slots, or None where the kernel has no
    table per process (or this is not Linux)."""
    prctl = _prctl()
    if prctl is None:
        return None
    wanted = min(MAX_SLOTS, max(MIN_SLOTS, 1 << max(0, int(threads) - 1).bit_length()))
    slots = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0)
    if slots < 0:
        return None  # EINVAL: before Linux 6.16, one table for the machine
    if slots < wanted and prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, wanted, 0, 0) == 0:
        slots = wanted
    return slots


def _prctl():
    if os.uname().sysname != "Linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl
