"""``python -m local.redshift_data``: serve the Data API emulator until SIGINT/SIGTERM.

Settings come from ``SPECTRA_EMULATOR_*`` variables (see ``EmulatorSettings``); flags override them. Once ready it
prints exactly one line, ``Redshift Data API emulator listening on <url>``, so scripts can wait for it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .config import EmulatorSettings
from .quotas import DATA_API_RATE_QUOTAS
from .server import start_emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.redshift_data", description=__doc__)
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--data-dir", help="embedded PostgreSQL data folder (default: a temp dir removed on exit)")
    parser.add_argument("--database-url", help="use this PostgreSQL instead of the embedded one")
    parser.add_argument("--aws-endpoint-url", help="EventBridge / S3 / Secrets Manager endpoint (e.g. moto)")
    parser.add_argument("--event-drop-rate", type=float, help="fraction of completion events to drop (0..1)")
    parser.add_argument(
        "--aws-quotas", action="store_true", help="meter request rates with the Data API's default quotas"
    )
    parser.add_argument("--max-active-statements", type=int, help="active statements at once (default 500)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = EmulatorSettings().to_config(
        port=args.port,
        data_dir=args.data_dir,
        database_url=args.database_url,
        aws_endpoint_url=args.aws_endpoint_url,
        event_drop_rate=args.event_drop_rate,
        max_active_statements=args.max_active_statements,
        rate_limits=dict(DATA_API_RATE_QUOTAS) if args.aws_quotas else None,
    )
    emulator = start_emulator(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Redshift Data API emulator listening on {emulator.endpoint_url}", flush=True)
    try:
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
