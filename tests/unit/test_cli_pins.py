"""The operator commands' whole-number arguments (``spectra.cli.whole_number``), held before only through the
commands using them (found by mutation testing spectra/cli.py): each bound is taken, one past it is refused saying
the bounds, and anything but a whole number is refused saying what was given."""

from __future__ import annotations

import argparse

import pytest

from spectra.cli import whole_number

pytestmark = pytest.mark.unit


def test_each_bound_is_taken_and_one_past_it_is_refused_naming_both():
    parse = whole_number(1, 500)
    assert (parse("1"), parse("500"), parse("+7"), parse(" 8 ")) == (1, 500, 7, 8)
    for text, number in (("0", 0), ("501", 501)):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            parse(text)
        assert str(refused.value) == f"{number} is not between 1 and 500"


def test_without_an_upper_bound_any_number_from_the_lower_one_is_taken():
    parse = whole_number(0)
    assert (parse("0"), parse(str(2**40))) == (0, 2**40)
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse("-1")
    assert str(refused.value) == "-1 is not 0 or more"


@pytest.mark.parametrize("text", ["", "1.5", "ten", "1e3", "0x10"])
def test_anything_but_a_whole_number_is_refused_quoting_it(text):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        whole_number(0, 10)(text)
    assert str(refused.value) == f"not a whole number: {text!r}"


def test_a_command_line_refuses_it_at_once_with_exit_2():
    """argparse turns the refusal into its usage error: exit status 2, nothing clamped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=whole_number(1, 500))
    assert parser.parse_args(["--rate", "500"]).rate == 500
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--rate", "501"])
    assert exited.value.code == 2
