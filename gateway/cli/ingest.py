"""``llm-gateway ingest``: the ingester in the foreground (``serve`` starts one itself unless
``telemetry.ingester`` is ``external``; run this one where you want it instead)."""

from __future__ import annotations

import os
import threading

import click

from gateway.cli.support import config_option, load_cli_config

PARENT_CHECK_S = 1.0


@click.command()
@config_option
@click.option("--data-dir", default=None, help="Data folder (request log, embedded store); "
              "default telemetry.data_dir, $LLM_GATEWAY_DATA_DIR or ./.llm-gateway.")
@click.option("--parent-pid", type=int, default=None, hidden=True,
              help="Exit when this process is gone (set by serve's supervisor).")
def ingest(config_path: str | None, data_dir: str | None, parent_pid: int | None) -> None:
    """Read the request log into ClickHouse until SIGTERM/SIGINT (serve runs one itself unless
    telemetry.ingester is external)."""
    from gateway.cli.support import fail
    from gateway.ingest.claim import IngesterBusy
    from gateway.ingest.process import run
    from gateway.store.embedded import StoreBusy

    snapshot = load_cli_config(config_path, announce=False)
    stop = threading.Event()
    if parent_pid:
        def watch_parent() -> None:
            while not stop.wait(PARENT_CHECK_S):
                if os.getppid() != parent_pid:  # re-parented: serve is gone
                    stop.set()

        threading.Thread(target=watch_parent, name="gateway-ingest-parent", daemon=True).start()
    try:
        code = run(snapshot, data_dir, stop=stop)
    except (IngesterBusy, StoreBusy) as exc:
        fail(str(exc))
    except OSError as exc:  # a data or log folder that cannot be created or written
        fail(f"cannot use the telemetry folders: {exc}")
    raise SystemExit(code)
