"""The benchmark's competing load stops with its block, also when the block fails."""

import psutil
import pytest

from benchmarks.contention import busy_cores


def test_busy_loops_run_during_the_block_and_stop_after_a_failure():
    with pytest.raises(RuntimeError), busy_cores(2) as pids:
        assert len(pids) == 2
        assert all(psutil.pid_exists(pid) for pid in pids)
        raise RuntimeError("the timed work failed")
    assert not any(psutil.pid_exists(pid) for pid in pids)
