"""The embedded PostgreSQL takes Redshift's defaults, whatever the machine it runs on is set to."""

from __future__ import annotations

import psycopg
import pytest

from local.redshift_data.engine import start_engine

pytestmark = pytest.mark.integration


def test_the_embedded_server_is_on_utc_on_a_machine_that_is_not(monkeypatch):
    """initdb writes the machine's time zone into the server's settings; Redshift's default is UTC, so a timestamp
    without an offset means UTC and TIMESTAMPTZ prints +00, on any machine."""
    monkeypatch.setenv("TZ", "America/New_York")  # what initdb (a child process) reads
    engine = start_engine(None, None, "emulator_admin", "dev")
    try:
        with psycopg.connect(engine.conninfo("emulator_admin", "dev"), autocommit=True) as conn:
            shown = conn.execute("SHOW timezone").fetchone()
            stamp = conn.execute("SELECT '2024-01-15 10:00:00'::timestamptz::text").fetchone()
    finally:
        engine.stop()
    assert shown == ("UTC",)
    assert stamp == ("2024-01-15 10:00:00+00",)


def test_embedding_writes_no_runtime_folder_warning_where_xdg_runtime_dir_is_unset():
    """pgserver's import asks platformdirs for the user's runtime folder, which warned (RuntimeDirWarning) on every
    machine without a login session (CI, containers, a root shell): the first line ``make run`` printed."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", "from local.redshift_data.engine import _pgserver; _pgserver()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Warning" not in run.stderr, run.stderr
