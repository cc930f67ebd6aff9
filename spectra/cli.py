"""What the operator commands (``python -m spectra.admin``) share on their command lines."""

from __future__ import annotations

import argparse


def whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``), anything else refused at once (exit 2, saying so),
    rather than clamped without a word."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{number} is not {bounds}")
        return number

    return parse
