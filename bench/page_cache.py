"""How fast this machine writes new data into the page cache: what caps a download's disk side.

A BitTorrent client writes every byte it downloads into new page-cache pages. Where the memory
is at hand, one thread does that at gigabytes a second (4,800-5,300 MiB/s on the bench's VM right
after a deletion). On a VM that hands freed memory back to its host (free page reporting), each
new page must first be supplied again by the host, and how many threads can take pages at once
becomes the limit: buffered writes to one file hold its inode lock, so a file takes new pages one thread at
a time, while page faults on a shared mapping of one file can run in several threads at once.

measure() writes PROBE_BYTES each way into a new file, settle_seconds after the previous one was
deleted, as the bench's timed downloads start.
"""
import ctypes
import mmap
import os
import threading
import time
from pathlib import Path

MiB = 1024 * 1024
PROBE_BYTES = 512 * MiB
CHUNK = 1 * MiB
THREADS = 4


def pwrite_one_file(directory, threads):
    """Write one new file with pwrite from `threads` threads (libtorrent's pread back end)."""
    fd = os.open(directory / "probe", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    data = os.urandom(CHUNK)
    try:
        return run_threads(threads, lambda k: [os.pwrite(fd, data, offset) for offset in
                                                range(k * CHUNK, PROBE_BYTES, threads * CHUNK)])
    finally:
        os.close(fd)


def pwrite_own_files(directory, threads):
    """Write `threads` new files, one per thread, with pwrite (a torrent of many files)."""
    data = os.urandom(CHUNK)

    def write(k):
        fd = os.open(directory / f"probe{k}", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for offset in range(0, PROBE_BYTES // threads, CHUNK):
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
    return run_threads(threads, write)


def mmap_one_file(directory, threads):
    """Write one new file through a shared mapping from `threads` threads (the mmap back end)."""
    data = ctypes.create_string_buffer(os.urandom(CHUNK), CHUNK)
    fd = os.open(directory / "probe", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, PROBE_BYTES)
        with mmap.mmap(fd, PROBE_BYTES) as mapping:
            view = ctypes.c_char.from_buffer(mapping)
            base = ctypes.addressof(view)
            try:
                # ctypes.memmove releases the GIL, so the threads' page faults overlap as in C++.
                return run_threads(threads, lambda k: [ctypes.memmove(base + offset, data, CHUNK) for offset in
                                                        range(k * CHUNK, PROBE_BYTES, threads * CHUNK)])
            finally:
                del view  # the mapping cannot close while a ctypes view of it exists
    finally:
        os.close(fd)


def run_threads(count, work):
    """Run work(k) in `count` threads; return MiB/s over PROBE_BYTES."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return PROBE_BYTES / MiB / (time.perf_counter() - started)


def clear(directory):
    """Delete the probe's files."""
    for path in directory.iterdir():
        path.unlink()


def measure(directory, settle_seconds):
    """{way: MiB/s} for each way of writing, each after a deletion and settle_seconds."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ways = {
        "pwrite, one file, 1 thread": lambda: pwrite_one_file(directory, 1),
        f"pwrite, one file, {THREADS} threads": lambda: pwrite_one_file(directory, THREADS),
        f"pwrite, {THREADS} files, {THREADS} threads": lambda: pwrite_own_files(directory, THREADS),
        "mmap, one file, 1 thread": lambda: mmap_one_file(directory, 1),
        f"mmap, one file, {THREADS} threads": lambda: mmap_one_file(directory, THREADS),
    }
    speeds = {}
    pwrite_one_file(directory, 1)  # something to delete before the first timed write
    for name, write in ways.items():
        clear(directory)
        os.sync()
        time.sleep(settle_seconds)
        speeds[name] = write()
    clear(directory)
    return speeds


if __name__ == "__main__":
    import sys
    import tempfile
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as tmp:
        for way, speed in measure(tmp, 2.0).items():
            print(f"{way}: {speed:.0f} MiB/s")
