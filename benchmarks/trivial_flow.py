"""The floor of a warm `fashionnet run`: a Prefect flow of one trivial task, started as
`fashionnet run` starts its flow (the project folder's environment; without PREFECT_API_URL, a
temporary Prefect server of its own, started while Prefect is imported), in a fresh process.

    python -m benchmarks.trivial_flow PROJECT_DIR

What a run costs beyond it is fashionnet's: its imports, its command line, its stages and their
tasks.
"""

import os
import sys
from pathlib import Path

from fashionnet.core.settings import apply_environment_defaults
from fashionnet_flows.temporary_server import TemporaryServer

SERVER_STARTUP_SECONDS = 90.0


def main() -> None:
    apply_environment_defaults(Path(sys.argv[1]))
    with TemporaryServer() as server:
        os.environ["PREFECT_API_URL"] = server.api_url  # before Prefect reads its settings
        from prefect import flow, task
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        @task
        def one() -> int:
            return 1

        @flow
        def trivial() -> int:
            return one()

        server.wait_until_ready(SERVER_STARTUP_SECONDS, check=lambda: None)
        assert trivial() == 1
        # As `fashionnet run` does: what is queued is sent while the server still listens.
        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)


if __name__ == "__main__":
    main()
