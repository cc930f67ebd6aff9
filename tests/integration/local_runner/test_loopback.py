"""The local stack's servers answer callers on this machine, not the web pages its browser shows (local/loopback.py):
moto allowed every origin (its own CORS), so any page could read and write the stack's tables, buckets and queues,
and a DNS-rebinding page reached the emulator, which runs SQL as any database user."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

pytestmark = pytest.mark.integration

EVIL = "https://evil.example"


def test_moto_grants_no_web_page_access(local_aws):
    preflight = requests.options(
        local_aws.endpoint_url + "/",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amz-target,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 403
    assert not any(name.lower().startswith("access-control-") for name in preflight.headers)

    # a form POST is a "simple" request: a page sends it without asking first, and only reading the answer is barred
    sqs = local_aws.client("sqs")
    url = sqs.create_queue(QueueName=f"loopback-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sent = requests.post(
        url, data={"Action": "SendMessage", "MessageBody": "from a web page"}, headers={"Origin": EVIL}, timeout=10
    )
    assert sent.status_code == 403 and "web pages" in sent.text
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    sqs.send_message(QueueUrl=url, MessageBody="from an SDK")  # no Origin, a loopback Host: served as ever
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["from an SDK"]


def test_a_rebinding_pages_requests_never_reach_the_emulator(redshift_emulator, tmp_path):
    marker = tmp_path / "ran"
    port = redshift_emulator.endpoint_url.rsplit(":", 1)[1]
    request = {
        "ClusterIdentifier": "any",
        "Database": "dev",
        "DbUser": "awsuser",
        "Sql": f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    }
    headers = {"X-Amz-Target": "RedshiftData.ExecuteStatement", "Content-Type": "application/x-amz-json-1.1"}
    for host, origin in ((f"rebind.attacker.example:{port}", None), (f"127.0.0.1:{port}", EVIL)):
        answer = requests.post(
            redshift_emulator.endpoint_url + "/",
            headers={**headers, "Host": host, **({"Origin": origin} if origin else {})},
            data=json.dumps(request),
            timeout=10,
        )
        assert answer.status_code == 403, answer.text
    same_origin = requests.post(  # the server's own origin, as a page it served would send
        redshift_emulator.endpoint_url + "/",
        headers={**headers, "Origin": redshift_emulator.endpoint_url},
        data=json.dumps({**request, "Sql": "select 1"}),
        timeout=10,
    )
    assert same_origin.status_code == 200 and "Id" in same_origin.json()
    assert not marker.exists()
