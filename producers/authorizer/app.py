"""Authorizer (REQUEST type): ``Authorization: Bearer <API key or JWT>`` → the tenant's identity in the context.

Which tokens count is :func:`spectra.auth.authenticate`'s business; this handler only reads the header and answers
API Gateway. The answer is cached per header value for the template's ``AuthorizerCacheSeconds`` (60 s at most), so
a revoked key, a deactivated tenant or an expired token is refused within that time.

The policy allows the whole API for this caller, so API Gateway can cache the answer per key; tenant boundaries are
enforced downstream (the job store scopes every lookup to the tenant, the warehouse applies row-level security).
Any failure is "Unauthorized" (401) with no hint of which part failed.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from spectra import logs
from spectra.auth import authenticate
from spectra.errors import Unauthorized
from spectra.ports import Budget, get_ports
from spectra.tenants import Caller

logger = Logger()
logs.install(logger)  # the same keys filter as every function's (spectra/logs.py)


def bearer_token(headers: dict[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def lambda_handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    token = bearer_token(dict(event.headers or {}))
    try:
        if token is None:
            raise Unauthorized("missing bearer token")
        ports = get_ports(Budget.CLIENT)
        tenant = authenticate(ports.tenants, ports.jwt, token)
    except Unauthorized:
        logger.info("rejected bearer token")
        raise Exception("Unauthorized") from None

    arn = event.parsed_arn
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
