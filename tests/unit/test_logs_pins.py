"""Log key behaviour no test held before (found by mutation testing spectra/logs.py): how an unreadable message is
described (each problem by place and kind, "; " between them, the first 10 and how many more), and that installing
the keys filter silences Powertools' "No application metrics to publish" warning alone, not every UserWarning."""

from __future__ import annotations

import uuid
import warnings

import pytest
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError, create_model

from spectra import logs

pytestmark = pytest.mark.unit


def refusal(model: type[BaseModel], data: dict) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value


class Pair(BaseModel):
    a: int
    b: str


def test_each_problem_is_told_by_place_and_kind_with_a_semicolon_between():
    assert logs.unreadable(refusal(Pair, {"a": "x"})) == "a: int_parsing; b: missing"


def test_a_problem_of_the_whole_body_is_told_as_body():
    assert logs.unreadable(refusal(Pair, [])) == "body: model_type"  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "told", "more"), [(10, 10, ""), (11, 10, " and 1 more"), (12, 10, " and 2 more")])
def test_the_first_10_problems_are_told_and_the_rest_counted(fields, told, more):
    model = create_model("Wide", **{f"f{n:02d}": (int, ...) for n in range(fields)})
    described = logs.unreadable(refusal(model, {}))
    assert described == "; ".join(f"f{n:02d}: missing" for n in range(told)) + more


def test_installing_the_filter_silences_only_the_no_metrics_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs.install(Logger(service=f"logs-pins-{uuid.uuid4().hex[:8]}"))
        warnings.warn(
            "No application metrics to publish. The cold-start metric may be published", UserWarning, stacklevel=1
        )
        warnings.warn("something else went wrong", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else went wrong"]
