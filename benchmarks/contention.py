"""A competing CPU-bound load: one busy-loop process per core, for the length of a block.

    with busy_cores():
        ...  # timed while every core is also wanted by a busy loop

The loops are stopped when the block ends, also when it raises or is interrupted.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def busy_cores(processes: int | None = None) -> Iterator[list[int]]:
    """Run `processes` busy loops (default: one per CPU) until the block ends; yields their
    process ids."""
    loops: list[subprocess.Popen] = []
    try:
        for _ in range(processes or os.cpu_count() or 1):
            loops.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP]))
        yield [loop.pid for loop in loops]
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()
