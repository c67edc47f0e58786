"""How long a small durable append takes, as a write-ahead log append does.

Usage: python3 bench/fsync_probe.py FILE [COUNT]

Appends COUNT (200) records of 200 bytes to FILE (created, removed after),
each followed by fdatasync, and prints the median and 99th percentile in ms:
"median p99". Used by bench/lib.sh (measure_machine) in the data directory
of the clusters.
"""

import os
import sys
import time


def main() -> None:
    path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    record = b"r" * 200
    took = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            took.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    median = took[len(took) // 2]
    p99 = took[min(len(took) - 1, len(took) * 99 // 100)]
    print(f"{median * 1e3:.3f} {p99 * 1e3:.3f}")


if __name__ == "__main__":
    main()
