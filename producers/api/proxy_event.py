"""The Lambda event, checked for the shape API Gateway gives it before Powertools or a route reads any of it.

API Gateway's REST proxy events have one shape: a method and a path; headers, query parameters and path parameters
as strings (each name's values as a list of strings in the multi-value maps), or null when there are none; the body
as a string or null; a request context with the request's id. A function invoked directly (the Lambda console, a
script, another service) or behind a misconfigured integration can be handed anything, and Powertools reads what it
is given: unchecked, a null query value (``{"limit": null}``) would be a 500, an event without ``httpMethod`` an
unhandled exception. Such an event is 400 ``invalid_request`` in the error shape, its details naming each
part that is wrong, and no route runs. Well-formed events pass as they are: nothing is rewritten.

The caller's identity is not checked here (the document and Swagger UI routes have none): a route reads it from the
authorizer's context (:meth:`spectra.tenants.Caller.from_authorizer_context`), 401 without it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

_CHECKED = ConfigDict(strict=True, extra="ignore", frozen=True)


class _RequestContext(BaseModel):
    model_config = _CHECKED

    request_id: str = Field(alias="requestId")
    path: str | None = None
    stage: str | None = None
    authorizer: dict[str, Any] | None = None  # its values are read by Caller.from_authorizer_context


class ProxyEvent(BaseModel):
    """The parts of a REST proxy event the API reads (Powertools' resolver, the body reader, the routes)."""

    model_config = _CHECKED

    http_method: str = Field(alias="httpMethod")
    path: str
    headers: dict[str, str] | None = None
    multi_value_headers: dict[str, list[str]] | None = Field(None, alias="multiValueHeaders")
    query: dict[str, str] | None = Field(None, alias="queryStringParameters")
    multi_value_query: dict[str, list[str]] | None = Field(None, alias="multiValueQueryStringParameters")
    path_parameters: dict[str, str] | None = Field(None, alias="pathParameters")
    body: str | None = None
    is_base64_encoded: bool | None = Field(None, alias="isBase64Encoded")
    request_context: _RequestContext = Field(alias="requestContext")

    @classmethod
    def checked(cls, event: Any) -> ProxyEvent:
        """``event`` read as API Gateway sends it, or :class:`RequestValidationError` (the API's 400) saying why not."""
        if not isinstance(event, dict):
            raise RequestValidationError([{"loc": (), "msg": "The event is not a JSON object", "type": "dict_type"}])
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None

    def log_keys(self) -> dict[str, Any]:
        """The tenant the authorizer vouched for and the job the path names, for every line the request writes."""
        tenant_id = (self.request_context.authorizer or {}).get("tenant_id")
        return {
            "tenant_id": tenant_id if isinstance(tenant_id, str) else None,
            "job_id": (self.path_parameters or {}).get("job_id"),
        }
