"""Hyperparameter declarations: coercion and validation."""

from __future__ import annotations

import pytest

from rltasks.hparams import HP, choices


def test_coercion_of_orion_values():
    assert HP(1, "x", kind=int).coerce("n", "3.666") == 4
    assert HP(1, "x", kind=int).coerce("n", 2.4) == 2
    assert HP(True, "x", kind=bool).coerce("b", "false") is False
    assert HP(True, "x", kind=bool).coerce("b", 1) is True
    assert HP(0.1, "x").coerce("f", "0.5") == 0.5


@pytest.mark.parametrize(("spec", "value", "message"), [
    (HP(0.1, "x", low=0.0, low_open=True), 0.0, r"f=0.0 is out of range: float in \(0.0, inf\]"),
    (HP(0.1, "x", high=1.0), 1.5, "out of range"),
    (HP(0.1, "x"), float("nan"), "not a valid float|must be finite"),
    (HP("a", "x", kind=str, choices=("a", "b")), "c", r"f='c' is not one of \['a', 'b'\]"),
    (HP(True, "x", kind=bool), "maybe", "not a valid bool"),
    (HP(1, "x", kind=int), True, "not a valid int"),
])
def test_invalid_values(spec, value, message):
    with pytest.raises(ValueError, match=message):
        spec.coerce("f", value)


def test_choices_prior_string():
    assert choices("adam", "sgd") == "choices(['adam', 'sgd'])"
    assert choices(True, False) == "choices([True, False])"
