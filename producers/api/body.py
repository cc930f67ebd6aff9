"""The request body, read strictly, before a model ever sees it.

Powertools parses bodies leniently and lets a few inputs escape as exceptions of its own or of Python's (a body that
is not UTF-8, JSON nested past the parser's recursion limit, an integer of more than 4,300 digits, multipart without a
boundary), which would surface as 500s. Here every body goes through one reader that answers in the error shape instead:

* 415 ``unsupported_media_type`` unless the body is ``application/json`` (any case, optionally ``charset=utf-8``).
  A request without a ``Content-Type`` (or with an empty one) is read as JSON. A body with a ``Content-Encoding`` (gzip,
  say) is 415 too: it is read as it comes (API Gateway decompresses nothing here).
* 413 ``payload_too_large`` past ``API_MAX_BODY_BYTES`` (1 MiB: the largest legal request, 100 KB of SQL and 64 KB of
  parameters, stays well under it even with every character escaped), checked before anything is decoded.
* 400 ``invalid_json`` for bytes that are not UTF-8, bad syntax, ``NaN``/``Infinity`` (and numbers that overflow to
  them, or underflow to 0), integers past Python's digit limit, a key given twice, a lone surrogate escape, or nesting
  past :data:`MAX_JSON_DEPTH` levels.
* 400 ``invalid_request`` for an array where the route reads an object: Powertools would take the array's first
  item as the body and drop the rest.

The reader replaces the body step of Powertools' request validation (:class:`StrictBodyValidation`); parameters,
headers and the model itself are validated by Powertools.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, get_args

from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.compat import field_annotation_is_sequence
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from spectra.errors import InvalidJson, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from spectra.strict_json import refuse_constant, unique_keys

JSON_MEDIA_TYPE = "application/json"
#: objects and arrays nested deeper than this are refused (``invalid_json``); a request of this API nests a few
#: levels at most
MAX_JSON_DEPTH = 64


def read_json_body(event: BaseProxyEvent, *, max_bytes: int) -> Any:
    """The body's JSON value (None when there is no body), or a typed 4xx error."""
    content_type = (event.headers.get("content-type") or "").strip()
    if content_type and not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            "send the body as application/json (UTF-8)", details={"content_type": content_type[:200]}
        )
    raw = event.body
    if raw is None or raw == "":
        return None
    encoding = (event.headers.get("content-encoding") or "").strip()
    if encoding.lower() not in ("", "identity"):
        # the bytes would be read as JSON text all the same (gzip: 400 "not valid UTF-8", which blames the JSON)
        raise UnsupportedMediaType(
            "send the JSON body without a Content-Encoding", details={"content_encoding": encoding[:200]}
        )
    if not isinstance(raw, str):
        raise InvalidRequest("the request body is not readable")
    if event.is_base64_encoded:
        if len(raw) > 4 * (max_bytes // 3 + 1):
            raise _too_large(max_bytes)
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the request body is not readable") from None
    else:
        # API Gateway hands a text body over as a string; a lone surrogate in it cannot be UTF-8, so keep it as
        # bytes here and let the strict decode below refuse it
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson("the body is not valid UTF-8", details={"position": exc.start}) from None
    return parse_strict_json(text)


def parse_strict_json(text: str) -> Any:
    """``json.loads`` without its extensions and with every failure a 400 ``invalid_json``."""
    try:
        value = json.loads(
            text, parse_constant=refuse_constant, parse_float=_finite_float, object_pairs_hook=unique_keys
        )
    except json.JSONDecodeError as exc:
        raise InvalidJson("the body is not valid JSON", details={"position": exc.pos, "reason": exc.msg}) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # Python's own limit on integer digits, or one of the hooks below
        raise InvalidJson("the body is not valid JSON", details={"reason": str(exc)[:200]}) from None
    _check_value(value)
    return value


def _check_value(value: Any) -> None:
    """Refuse what parsed but is no input: nesting past :data:`MAX_JSON_DEPTH`, and half a surrogate pair, which JSON
    may escape (``"\\ud800"``) but is no Unicode text and could not be stored or sent on.

    The depth is bounded here, not by the parser's recursion limit alone: that limit is the process's, and the SQL
    guard raises it for its own parser (spectra/sql_guard.py), so the same body would otherwise be refused
    ``invalid_json`` or parsed and refused ``invalid_request`` depending on what the process had run before."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            inner = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((each, depth + 1) for each in inner)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidJson("the body holds a lone surrogate escape, which is not Unicode text") from None


#: The charsets a body may declare: UTF-8, and ASCII, which is UTF-8 too.
UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")


def media_type_of(content_type: str) -> tuple[str, str | None]:
    """A Content-Type's media type (lower case) and its charset parameter, if any (lower case, unquoted)."""
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.lower(), charset


def is_json_media_type(content_type: str) -> bool:
    media_type, charset = media_type_of(content_type)
    return media_type == JSON_MEDIA_TYPE and charset in (None, "utf-8", "utf8")


def _too_deep() -> InvalidJson:
    return InvalidJson(
        f"the body nests deeper than this API reads ({MAX_JSON_DEPTH} levels)", details={"limit": MAX_JSON_DEPTH}
    )


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {max_bytes} bytes", details={"limit": max_bytes})


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number too large to represent")
    if value == 0 and any(digit in "123456789" for digit in text.lower().partition("e")[0]):
        # 1e-400 is read as 0.0: a value bound so would run the query on another number than the one sent
        raise ValueError("a number too small to represent (it would be read as 0)")
    return value


class StrictBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation with the body read by :func:`read_json_body`."""

    def __init__(self, max_bytes) -> None:
        super().__init__()
        self._max_bytes = max_bytes  # a callable, so settings are read per request, never at import

    def handler(self, app, next_middleware):
        repeated = _given_more_than_once(app)
        odd = _odd_whole_numbers(app)
        if not odd and not repeated:
            return super().handler(app, next_middleware)
        try:  # the request's other errors too, listed together as Powertools lists them; the route is not run
            super().handler(app, _refuse_to_run)
        except RequestValidationError as exc:  # one error a parameter: Powertools' own where it has one, but for
            # a repeated one (Powertools' would blame the values)
            said = {tuple(error["loc"]) for error in repeated}
            theirs = [error for error in exc.errors() if tuple(error["loc"]) not in said]
            seen = said | {tuple(error["loc"]) for error in theirs}
            odd = [*repeated, *theirs, *(error for error in odd if tuple(error["loc"]) not in seen)]
        except _Valid:
            odd = [*repeated, *odd]
        raise RequestValidationError(odd)

    def _get_body(self, app) -> Any:
        body = read_json_body(app.current_event, max_bytes=self._max_bytes())
        # Powertools reads a list given for a field that is not a sequence as its first item (what a repeated query
        # parameter needs), so a body [A, B] would run A and drop B without a word: refused, as [] already is.
        if isinstance(body, list) and not any(
            field_annotation_is_sequence(param.field_info.annotation)
            for param in app.context["_route"].dependant.body_params
        ):
            raise InvalidRequest(
                "the body must be a JSON object, not an array",
                details=[{"loc": ["body"], "msg": "Input should be an object", "type": "model_type"}],
            )
        return body


class _Valid(Exception):
    """Powertools' validation passed: the route would run next."""


def _refuse_to_run(app) -> Any:
    raise _Valid


def _odd_whole_numbers(app) -> list[dict[str, Any]]:
    """A query string's whole numbers (``limit``, ``maxRecords``) written otherwise than in the digits 0-9, as
    validation errors: Python's ``int`` reads ``1_0``, ``+1`` and `` 1`` as numbers, and Powertools' validation takes
    them, where the document's ``integer`` is none of them."""
    values = app.current_event.query_string_parameters or {}
    errors = []
    for param in app.context["_route"].dependant.query_params:
        raw = values.get(param.alias)
        annotation = param.field_info.annotation
        if raw is None or (annotation is not int and int not in get_args(annotation)):
            continue
        if not (raw.isascii() and raw.isdigit()):
            msg = "Input should be a whole number written in the digits 0-9 alone"
            errors.append({"loc": ("query", param.alias), "msg": msg, "type": "int_parsing", "input": raw})
    return errors


#: Headers every route reads as one value, whether or not it declares them: who calls (API Gateway hands the
#: authorizer and the route the last ``Authorization`` of several, so two valid keys would run as the second tenant) and
#: how the body is written (the last ``Content-Type`` would decide how the body is read).
ONE_VALUE_HEADERS = ("Authorization", "Content-Type", "Content-Encoding")


def _given_more_than_once(app) -> list[dict[str, Any]]:
    """Query parameters and headers of one value each sent more than once (``?limit=5&limit=5``, a client appending
    its own ``limit`` to a ``nextRecordsUrl``): Powertools would validate the list of them against the one value
    and refuse it as "Input should be a valid integer", blaming a value the client sent right.
    Said as they are; which of them was meant is not guessed. :data:`ONE_VALUE_HEADERS` count on every route."""
    event = app.current_event
    dependant = app.context["_route"].dependant
    headers: dict[str, int] = {}
    for name, values in (event.multi_value_headers or {}).items():
        headers[name.lower()] = headers.get(name.lower(), 0) + len(values or ())
    queries = {name: len(values or ()) for name, values in (event.multi_value_query_string_parameters or {}).items()}
    errors = []
    for where, params, counts in (
        ("query", dependant.query_params, queries),
        ("header", dependant.header_params, headers),
    ):
        for param in params:
            if field_annotation_is_sequence(param.field_info.annotation):
                continue
            name = param.alias.lower() if where == "header" else param.alias
            if counts.get(name, 0) > 1:
                msg = f"{param.alias} was given {counts[name]} times; send it once"
                errors.append({"loc": (where, param.alias), "msg": msg, "type": "repeated"})
    declared = {param.alias.lower() for param in dependant.header_params}
    for name in ONE_VALUE_HEADERS:
        if name.lower() not in declared and headers.get(name.lower(), 0) > 1:
            msg = f"{name} was given {headers[name.lower()]} times; send it once"
            errors.append({"loc": ("header", name), "msg": msg, "type": "repeated"})
    return errors
