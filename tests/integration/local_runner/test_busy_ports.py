"""`make run` on a machine where a default port is taken (LocalStack on 4566, another app on 3000): the stack listens
elsewhere, and its banner says so, since README's commands name the defaults (found by the newcomer review)."""

from __future__ import annotations

import socket

import pytest

import local.__main__ as main

pytestmark = pytest.mark.integration


def test_a_busy_port_is_replaced_and_the_banner_says_so(monkeypatch):
    monkeypatch.setattr(main, "_busy", [])
    monkeypatch.delenv("SPECTRA_API_PORT", raising=False)
    assert main.busy_note() == ""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert main._port("SPECTRA_API_PORT", taken) == 0  # any free port instead
    note = main.busy_note()
    assert f"{taken} (SPECTRA_API_PORT)" in note and "not the defaults in README's commands" in note
