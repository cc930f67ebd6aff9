"""A psycopg cursor whose ``stream()`` works for every kind of statement.

``Cursor.stream()`` fetches rows in chunks (flat memory for any result size) but psycopg discards the final result
of the stream: an empty SELECT then has no ``description`` and a command (INSERT, CREATE ...) raises "didn't produce
a result" after it ran. This subclass keeps that final result, so one streaming code path serves SELECTs, empty
results and commands alike. It overrides one internal generator of psycopg (pinned in pyproject.toml); the test suite
covers all three cases.
"""

from __future__ import annotations

import psycopg
from psycopg import pq
from psycopg.generators import fetch

_ROWS = (pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)
_DONE = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class StreamingCursor(psycopg.Cursor):
    command_rows: int = -1  # rows affected by a command run through stream() (-1 when not a command)

    def _stream_fetchone_gen(self, first: bool):
        res = yield from fetch(self._pgconn)
        if res is None:
            return None
        status = res.status
        if status in _ROWS:
            self.pgresult = res
            self._tx.set_pgresult(res, set_loaders=first)
            if first:
                self._make_row = self._make_row_maker()
            return res
        if status in _DONE:
            if first:  # no row came before: keep the result for its description / command tag
                self.pgresult = res
                self._tx.set_pgresult(res, set_loaders=True)
                if status == pq.ExecStatus.COMMAND_OK:
                    self.command_rows = res.command_tuples if res.command_tuples is not None else 0
            while res:
                res = yield from fetch(self._pgconn)
            return None
        return self._raise_for_result(res)
