"""The API's own URLs (Location, links, contentUrl, nextRecordsUrl) lead back to it wherever it is called.

On AWS the template's ``ApiUrl`` is ``https://<id>.execute-api.<region>.amazonaws.com/<Stage>``: the API answers
under ``/<Stage>``, and a URL written from the host's root without it reaches API Gateway's 403. A client resolves
each URL against the one it called (RFC 3986), as a browser or ``requests`` does; the local gateway serves the API both
under its stage and at the root (as a custom domain would), so both are followed here.
"""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
import requests

from tests.fixtures.bulk import csv_bytes
from tests.fixtures.stack import ApiClient

pytestmark = pytest.mark.e2e


def follow(client: ApiClient, called: str, url: str, method: str = "GET", **kwargs):
    """``url`` from an answer to a request for ``called``, resolved as a client resolves it, and requested."""
    headers = {"Authorization": f"Bearer {client.api_key}", **kwargs.pop("headers", {})}
    return requests.request(method, urljoin(client.base_url + called, url), headers=headers, timeout=30, **kwargs)


@pytest.fixture(params=["stage", "root"])
def where(request, spectra_stack) -> str:
    """The path in front of the API's own: ``/<Stage>`` (the execute-api URL) or nothing."""
    return f"/{spectra_stack.template.resolver.parameters['Stage']}" if request.param == "stage" else ""


@pytest.mark.parametrize("route", ["/v1/queries", "/v1/queries/", "/v1//queries", "//v1/queries"])
def test_a_query_jobs_location_and_links_lead_back_to_it(new_tenant, where, route):
    # a trailing or doubled slash is routed as the path itself; the stage was then left out of the answer's URLs
    client = new_tenant()
    response = client.request("POST", f"{where}{route}", json={"sql": "select 1 as one"})
    assert response.status_code == 202, response.text
    job = response.json()
    location = response.headers["Location"]
    assert location == job["links"]["self"] == f"{where}/v1/jobs/{job['job_id']}"
    found = follow(client, f"{where}{route}", location)
    assert found.status_code == 200 and found.json()["job_id"] == job["job_id"], found.text


def test_a_bulk_jobs_location_content_url_and_next_page_lead_back_to_the_api(bulk_tenant, where):
    bulk = bulk_tenant()
    client, created = bulk.api, f"{where}/v1/bulk/jobs"
    ids = []
    for _ in range(2):
        response = client.request("POST", created, json={"object": bulk.table, "operation": "insert"})
        assert response.status_code == 201, response.text
        job = response.json()
        ids.append(job["id"])
        assert response.headers["Location"] == f"{where}/v1/bulk/jobs/{job['id']}"
        assert follow(client, created, response.headers["Location"]).json()["id"] == job["id"]
    batch = csv_bytes([["email", "name", "city", "score"], ["ann@x", "Ann", "Oslo", "1"]])
    put = follow(client, created, job["contentUrl"], "PUT", data=batch, headers={"Content-Type": "text/csv"})
    assert put.status_code == 201, put.text
    first = client.request("GET", created, params={"limit": 1}).json()
    assert first["nextRecordsUrl"].startswith(f"{where}/v1/bulk/jobs?")
    rest = follow(client, created, first["nextRecordsUrl"])
    assert rest.status_code == 200, rest.text
    assert {r["id"] for r in first["records"] + rest.json()["records"]} == set(ids)


def test_a_subscriptions_location_leads_back_to_it(new_tenant, where):
    client = new_tenant()
    called = f"{where}/v1/subscriptions"
    response = client.request("POST", called, json={"url": "http://127.0.0.1:9/in", "events": ["Job Completed"]})
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{where}/v1/subscriptions/{response.json()['id']}"
    found = follow(client, called, response.headers["Location"])
    assert found.status_code == 200 and found.json()["id"] == response.json()["id"]
