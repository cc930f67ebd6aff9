"""Authorizer (REQUEST type): ``Authorization: Bearer <API key or JWT>`` → the tenant's identity in the context.

Which tokens count is :func:`spectra.auth.authenticate`'s business; this handler only reads the header and answers
API Gateway. The answer is cached per header value for the template's ``AuthorizerCacheSeconds`` (60 s at most), so
a revoked key, a deactivated tenant or an expired token is refused within that time.

The policy allows the whole API for this caller, so API Gateway can cache the answer per key; tenant boundaries are
enforced downstream (the job store scopes every lookup to the tenant, the warehouse applies row-level security).
Any failure is "Unauthorized" (401) with no hint of which part failed.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayRouteArn,
    parse_api_gateway_arn,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from spectra import logs
from spectra.auth import authenticate
from spectra.errors import Unauthorized
from spectra.ports import Budget, get_ports
from spectra.tenants import Caller

logger = Logger()
logs.install(logger)  # the same keys filter as every function's (spectra/logs.py)

#: A REST API method's ARN as API Gateway names the request: ``arn:<partition>:execute-api:<region>:<account>:<api
#: id>/<stage>/<method>/<resource path>`` (the path may hold any character, a colon or a decoded line feed too)
_METHOD_ARN = re.compile(r"arn:[^:/]+:execute-api:[^:/]+:[^:/]+:[^:/]+/[^/]+/[^/]+(/.*)?", re.DOTALL)


def bearer_token(headers: Any) -> str | None:
    """The token of the ``Authorization: Bearer`` header in ``headers`` (the event's, a map of strings from API
    Gateway; anything else holds none)."""
    if not isinstance(headers, dict):
        return None
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not isinstance(value, str) or not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def method_arn(value: Any) -> APIGatewayRouteArn | None:
    """The event's ``methodArn``, read, or None for one API Gateway would not send (a direct invocation's)."""
    if not isinstance(value, str) or not _METHOD_ARN.fullmatch(value):
        return None
    return parse_api_gateway_arn(value)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict:
    """A REQUEST authorizer's event from API Gateway; any other (a TOKEN one, one invoked directly with an event of
    its own) is refused as a bad key is: ``Unauthorized``, where an exception of Python's would be API Gateway's
    AUTHORIZER_CONFIGURATION_ERROR, a 5xx."""
    request = event if isinstance(event, dict) else {}
    arn = method_arn(request.get("methodArn"))
    if arn is None:
        logger.warning("refused an event without a method ARN")  # not API Gateway's: it names every request so
        raise Exception("Unauthorized")
    token = bearer_token(request.get("headers"))
    try:
        if token is None:
            raise Unauthorized("missing bearer token")
        ports = get_ports(Budget.CLIENT)
        tenant = authenticate(ports.tenants, ports.jwt, token)
    except Unauthorized:
        logger.info("rejected bearer token")
        raise Exception("Unauthorized") from None

    policy = APIGatewayAuthorizerResponse(
        principal_id=tenant.tenant_id,
        partition=arn.partition,  # aws-us-gov, aws-cn: a policy naming "aws" there denies every call
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=Caller.of(tenant).authorizer_context(),
        usage_identifier_key=tenant.usage_key,  # the API key of the tenant's usage plan (rate and quota)
    )
    policy.allow_all_routes()
    logger.append_keys(tenant_id=tenant.tenant_id)
    return policy.asdict()
