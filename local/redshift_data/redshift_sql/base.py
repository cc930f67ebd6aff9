"""The two types every Redshift-only statement shares with the emulator's executor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedshiftResult:
    """What a Redshift-only statement reports back: the executor turns it into DescribeStatement's ResultRows."""

    rows_affected: int


class RedshiftSqlError(Exception):
    """A user-facing failure of a Redshift-only statement (bad option, missing S3 object, load errors past MAXERROR).

    The message is written for the person who wrote the SQL: it names the option, the S3 URL or the line at fault.
    The executor turns it into a FAILED statement with this message as its Error.
    """
