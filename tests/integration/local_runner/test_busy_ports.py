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


def test_a_port_a_stopped_stack_left_in_time_wait_is_not_called_busy(monkeypatch):
    """For a minute after make run stops, its ports sit in TIME_WAIT: the servers (SO_REUSEADDR) bind them, and the
    probe, without it, called them busy and moved the stack (found by the diff review)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server's side closes first, as a stopped server's does: the port enters TIME_WAIT
    server.close()
    client.recv(1)
    client.close()
    monkeypatch.setattr(main, "_busy", [])
    monkeypatch.setenv("SPECTRA_API_PORT", str(port))
    assert main._port("SPECTRA_API_PORT", 3000) == port and main.busy_note() == ""


@pytest.mark.parametrize("value", ["3000x", "99999", "-1", "4566 4567"])
def test_a_port_variable_that_is_no_port_is_one_line_before_anything_starts(monkeypatch, value):
    """A typo in SPECTRA_*_PORT was a ValueError or OverflowError traceback, after moto had started (walk of README's
    Start here)."""
    monkeypatch.setattr(main, "_busy", [])
    monkeypatch.setenv("SPECTRA_REDSHIFT_PORT", value)
    with pytest.raises(SystemExit) as stopped:
        main._port("SPECTRA_REDSHIFT_PORT", 4567)
    assert (
        str(stopped.value)
        == f"SPECTRA_REDSHIFT_PORT={value!r} is not a port: give one from 1 to 65535, or 0 for any free port"
    )


def test_an_empty_port_variable_is_the_default(monkeypatch):
    monkeypatch.setattr(main, "_busy", [])
    monkeypatch.setenv("SPECTRA_API_PORT", "")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        free = holder.getsockname()[1]
    assert main._port("SPECTRA_API_PORT", free) == free


def test_two_port_variables_naming_one_port_give_the_second_server_a_free_one(monkeypatch):
    """Checking every variable up front first probed all three before any server started, so the emulator was handed
    the port moto had just taken (diff review): each is still probed just before its own server starts."""

    class Stop(Exception):
        pass

    class Aws:
        endpoint_url, region = "http://127.0.0.1:1", "us-east-1"

        def export(self):
            pass

    listeners, asked = [], []

    def start_moto(port):  # binds its port, as moto does
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        listeners.append(listener)
        return Aws()

    def start_emulator(config):
        asked.append(config.port)
        raise Stop

    monkeypatch.setattr(main, "_busy", [])
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("SPECTRA_AWS_PORT", str(port))
    monkeypatch.setenv("SPECTRA_REDSHIFT_PORT", str(port))
    monkeypatch.delenv("SPECTRA_API_PORT", raising=False)
    monkeypatch.setattr(main, "start_moto", start_moto)
    monkeypatch.setattr(main, "start_emulator", start_emulator)
    monkeypatch.setattr(main, "_until_stopped", lambda: None)
    monkeypatch.setattr(main.lines, "install", lambda: None)
    try:
        with pytest.raises(Stop):
            main.main([])
    finally:
        for listener in listeners:
            listener.close()
    assert asked == [0] and main._busy == [f"{port} (SPECTRA_REDSHIFT_PORT)"]


def test_an_api_port_with_no_api_is_refused(capsys):
    """``--api-port`` beside ``--no-api`` was taken, and the port silently unused (the operations walk)."""
    with pytest.raises(SystemExit) as stopped:
        main._arguments(
            ["--functions-only", "--aws", "http://a", "--redshift", "http://r", "--no-api", "--api-port", "1"]
        )
    assert stopped.value.code == 2
    assert "--api-port and --no-api" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--api-port", "-1", "-1 is not between 0 and 65535"),
        ("--api-port", "70000", "70000 is not between 0 and 65535"),  # bind() took it modulo 65536
        ("--schedule-interval", "-1", "-1 is not a number of seconds above 0"),  # the reconciler ran back to back
        ("--schedule-interval", "nan", "nan is not a number of seconds above 0"),
        ("--receive-visibility", "-5", "-5 is not 1 or more"),
    ],
)
def test_a_flag_out_of_bounds_is_refused_in_a_line(capsys, flag, value, said):
    """The flags are bounded as the SPECTRA_*_PORT variables are (the operations review: a traceback, a port wrapped
    to another, a schedule firing without pause)."""
    with pytest.raises(SystemExit) as stopped:
        main._arguments(["--functions-only", "--aws", "http://a", "--redshift", "http://r", flag, value])
    assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_a_state_that_is_a_directory_or_no_stacks_is_refused_in_a_line(tmp_path, capsys):
    from local.runner.state import StackState
    from local.runner.template import TemplateError

    with pytest.raises(SystemExit) as stopped:
        main._arguments(["--state", str(tmp_path)])
    assert stopped.value.code == 2 and "is a directory" in capsys.readouterr().err
    with pytest.raises(TemplateError, match="cannot be read"):
        StackState.load(tmp_path)
    written = tmp_path / "state.json"
    written.write_text('{"version": 1}')
    with pytest.raises(TemplateError, match="is not a stack's state"):
        StackState.load(written)
    written.write_bytes(b"\xff\xfe{}")  # not UTF-8 (the second diff review: a traceback)
    with pytest.raises(TemplateError, match="is not JSON"):
        StackState.load(written)


def test_a_state_file_variable_naming_a_directory_is_refused_in_a_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPECTRA_STATE_FILE", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        main._arguments([])
    assert stopped.value.code == 2 and f"SPECTRA_STATE_FILE={tmp_path} is a directory" in capsys.readouterr().err
