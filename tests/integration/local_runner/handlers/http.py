"""An API proxy integration that echoes the proxy event, plus a few fixed responses."""

import base64
import json


def echo(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Handler": "echo"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(event),
    }


def binary(event, context):
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/octet-stream"},
        "body": base64.b64encode(b"\x00\x01\xff").decode(),
        "isBase64Encoded": True,
    }


def broken(event, context):
    raise RuntimeError("an unhandled error becomes API Gateway's 502")
