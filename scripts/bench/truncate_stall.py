#!/usr/bin/env python3
"""What freeing a large file does to a concurrent fdatasync on the same file system.

Dropping a body partition frees its files at once. This writes a file of SIZE MB in DIR (on
the file system of PostgreSQL's data directory, to test that one), then, while a probe thread
writes 8 KB and calls fdatasync every 2 ms (as a commit flushes the WAL), truncates the file to
zero in one call, and prints the probe's slowest flush before and from then on. With
`--steps MB` it truncates that many MB at a time, 10 ms apart, for comparison.

    python3 scripts/bench/truncate_stall.py /var/lib/postgresql 537
    python3 scripts/bench/truncate_stall.py /var/lib/postgresql 537 --steps 16

Writes SIZE MB (plus 8 KB) under DIR in a folder of its own and removes it at the end.
"""

import argparse
import os
import shutil
import tempfile
import threading
import time


def main() -> None:
    args = parse_args()
    folder = tempfile.mkdtemp(prefix="truncate-stall-", dir=args.dir)
    try:
        run(folder, args.size_mb, args.steps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a folder on the file system to test")
    parser.add_argument("size_mb", type=int, help="size of the file to free, in MB")
    parser.add_argument("--steps", type=int, metavar="MB", help="free it this many MB at a time")
    return parser.parse_args()


def run(folder: str, size_mb: int, steps: int | None) -> None:
    big = os.path.join(folder, "big")
    write_file(big, size_mb)
    flushes: list[tuple[float, float]] = []
    stop = threading.Event()
    probe = threading.Thread(target=flush_loop, args=(folder, flushes, stop))
    probe.start()
    time.sleep(1.0)
    started = time.perf_counter()
    if steps:
        size = size_mb << 20
        while size > 0:
            size = max(0, size - (steps << 20))
            os.truncate(big, size)
            time.sleep(0.01)
    else:
        os.truncate(big, 0)
    took = time.perf_counter() - started
    time.sleep(1.5)
    stop.set()
    probe.join()
    before = [t for at, t in flushes if at < started]
    after = [t for at, t in flushes if at >= started]
    how = f"in {steps} MB steps" if steps else "at once"
    print(
        f"freed {size_mb} MB {how} in {took * 1000:.1f} ms; slowest fdatasync of 8 KB: "
        f"{max(before) * 1000:.1f} ms before ({len(before)} flushes), "
        f"{max(after) * 1000:.1f} ms from then on ({len(after)})"
    )


def write_file(path: str, size_mb: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def flush_loop(folder: str, flushes: list, stop: threading.Event) -> None:
    fd = os.open(os.path.join(folder, "probe"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while not stop.is_set():
            at = time.perf_counter()
            os.pwrite(fd, b"x" * 8192, 0)
            os.fdatasync(fd)
            flushes.append((at, time.perf_counter() - at))
            time.sleep(0.002)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
