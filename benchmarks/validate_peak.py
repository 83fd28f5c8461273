"""The validate stage alone, in a fresh process: its time and peak memory on a raw folder.

    python -m benchmarks.validate_peak RAW_DIR PROJECT_DIR VALIDATION_SIZE   one JSON line

Prepares the raw folder's splits (unless current), removes every stored card, then times
`fashionnet.pipeline.validate_data` with the high-water mark of resident memory started afresh
when it begins (`scale.PeakTimer`). Prints `seconds`, `peak_rss_mb` (the stage's peak),
`start_rss_mb` (resident memory when it began: the imports and what prepare left) and `images`
(of every split). Importing this module changes no environment.
"""

import json
import shutil
import sys
from pathlib import Path

from benchmarks import RUN, run_context
from benchmarks.scale import MB, PeakTimer
from fashionnet.core.layout import Layout
from fashionnet.pipeline import fetch_and_prepare, validate_data


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the memory measurement needs Linux")


def main(raw_dir: str, project_dir: str, validation_size: str) -> None:
    layout = Layout(Path(project_dir))
    options = RUN.replace(verify=False, validation_size=int(validation_size))
    context = run_context(layout, Path(raw_dir), options)
    _, splits = fetch_and_prepare(context)
    shutil.rmtree(layout.validation_dir, ignore_errors=True)  # count every split afresh
    timer, start = PeakTimer(), resident_bytes()
    with timer("validate"):
        validation = validate_data(context, splits)
    result = {
        "seconds": timer.seconds["validate"],
        "peak_rss_mb": timer.peaks["validate"],
        "start_rss_mb": start / MB,
        "images": sum(tally.images for tally in validation.tallies.values()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
