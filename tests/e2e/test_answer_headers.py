"""The API's answers over HTTP, as caches, browsers and HTTP clients read their headers: the functions' answers and
API Gateway's own (the template's GatewayResponses, which the local gateway serves as API Gateway does).

None may be stored by a browser's disk cache or a shared proxy (``Cache-Control: no-store``): they hold tenants'
rows, presigned URLs and the webhook secret shown once; none may be sniffed into another type
(``X-Content-Type-Options: nosniff``); CSV pages say they are UTF-8."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.test_bulk_query import create_query, wait_job

pytestmark = pytest.mark.e2e


def assert_private(response: requests.Response, what: str) -> None:
    assert response.headers.get("Cache-Control") == "no-store", (what, dict(response.headers))
    assert response.headers.get("X-Content-Type-Options") == "nosniff", (what, dict(response.headers))


def test_a_tenants_answers_may_not_be_stored(new_tenant):
    client = new_tenant()
    subscribed = client.request(
        "POST", "/v1/subscriptions", json={"url": "http://127.0.0.1:9/in", "events": ["Job Completed"]}
    )
    assert subscribed.status_code == 201 and subscribed.json()["secret"].startswith("whsec_"), subscribed.text
    job = client.wait(client.submit("select 'Zoë' as name")["job_id"])
    results = client.request("GET", f"/v1/jobs/{job['job_id']}/results")
    assert results.status_code == 200 and results.json()["rows"] == [["Zoë"]], results.text
    for what, response in {
        "the webhook secret": subscribed,
        "the result's rows": results,
        "the job": client.request("GET", f"/v1/jobs/{job['job_id']}"),
        "no such job": client.request("GET", "/v1/jobs/j_none"),
        "a method the path does not serve": client.request("PUT", "/v1/jobs"),
    }.items():
        assert_private(response, what)


def test_api_gateways_own_answers_may_not_be_stored(spectra_stack):
    unauthorized = requests.get(spectra_stack.api_url + "/v1/jobs", timeout=10)
    no_route = requests.get(spectra_stack.api_url + "/nothing/here", timeout=10)
    assert (unauthorized.status_code, no_route.status_code) == (401, 404)
    assert_private(unauthorized, "401 UNAUTHORIZED")
    assert_private(no_route, "404 MISSING_AUTHENTICATION_TOKEN")


def test_a_csv_page_is_read_as_utf8_by_an_http_client(new_tenant):
    """requests decodes a text/* answer without a charset as ISO-8859-1 (RFC 2616's default), browsers as
    windows-1252: the tenant's Zoë read as ZoÃ«."""
    client = new_tenant()
    job = wait_job(client, create_query(client, "select 'Zoë' as name")["id"])
    assert job["state"] == "JobComplete", job
    page = client.request("GET", f"/v1/bulk/jobs/{job['id']}/results")
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert page.text.splitlines() == ["name", "Zoë"]
    assert_private(page, "a CSV page")
