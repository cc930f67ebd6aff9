"""Strict JSON reading behaviour no test held before (found by mutation testing spectra/strict_json.py): a key given
twice is refused naming at most its first 100 characters, the same key in two objects is not twice, and each of
``NaN``, ``Infinity`` and ``-Infinity`` is refused by name, as json.loads reads with these hooks."""

from __future__ import annotations

import json

import pytest

from spectra.strict_json import refuse_constant, unique_keys

pytestmark = pytest.mark.unit


def _loads(text: str):
    return json.loads(text, object_pairs_hook=unique_keys, parse_constant=refuse_constant)


def test_an_object_keeps_its_keys_in_order_with_their_values():
    """Distinct keys read as the object, nested objects too, in the order given."""
    assert list(_loads('{"b": 1, "a": {"x": [1, 2]}, "c": null}').items()) == [
        ("b", 1),
        ("a", {"x": [1, 2]}),
        ("c", None),
    ]


def test_the_same_key_in_two_objects_is_not_given_twice():
    """Two objects of a list, or an object and the one it holds, may each have the key "k"."""
    assert _loads('[{"k": 1}, {"k": 2}]') == [{"k": 1}, {"k": 2}]
    assert _loads('{"k": {"k": 3}}') == {"k": {"k": 3}}


def test_a_key_given_twice_is_refused_by_name():
    """The refusal names the key, whichever value came last."""
    with pytest.raises(ValueError, match=r"^the key 'a' is given twice$"):
        _loads('{"a": 1, "b": 2, "a": 1}')


def test_a_long_key_given_twice_is_named_by_its_first_100_characters():
    """A 150-character key is told as its first 100 characters, not 99 or 101, nor the whole key."""
    key = "k" * 99 + "LAST" + "z" * 47
    with pytest.raises(ValueError) as refused:
        _loads(json.dumps({key: 1})[:-1] + f', "{key}": 2}}')
    assert str(refused.value) == f"the key '{'k' * 99}L' is given twice"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_the_infinities_are_refused_by_name(constant):
    """Python's json takes them; JSON has not: each is refused saying it is not a JSON number."""
    with pytest.raises(ValueError, match=f"^{constant} is not a JSON number$"):
        _loads(f'{{"x": {constant}}}')
