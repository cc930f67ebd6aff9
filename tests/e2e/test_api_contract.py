"""The REST contract: errors in one shape with the right status, idempotency, listing, result formats."""

import csv
import gzip
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest
import requests

pytestmark = pytest.mark.e2e


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json"}, 400, "invalid_json"),
        ({"json": {}}, 400, "invalid_request"),
        ({"json": {"sql": ""}}, 400, "invalid_request"),
        ({"json": {"sql": "   "}}, 400, "invalid_request"),
        ({"json": {"sql": "select 1", "format": "xml"}}, 400, "invalid_request"),
        ({"json": {"sql": "select 1", "surprise": True}}, 400, "invalid_request"),
        ({"json": {"sql": "select :x", "parameters": [{"name": "1bad", "value": "v"}]}}, 400, "invalid_request"),
        ({"json": {"sql": "SET ROLE awsuser"}}, 400, "sql_rejected"),
        ({"json": {"sql": "select 1; select 2"}}, 400, "sql_rejected"),
        ({"json": {"sql": "select '" + "x" * 100_001 + "'"}}, 413, "payload_too_large"),
    ],
)
def test_submit_errors(new_tenant, kwargs, status, code):
    client = new_tenant()
    error = error_of(client.request("POST", "/v1/queries", **kwargs), status)
    assert error["code"] == code
    assert error["message"]


def test_unknown_job_and_route(new_tenant):
    client = new_tenant()
    assert error_of(client.request("GET", "/v1/jobs/j_doesnotexist"), 404)["code"] == "not_found"
    assert error_of(client.request("DELETE", "/v1/jobs/j_doesnotexist"), 404)["code"] == "not_found"


def test_missing_or_bad_key_is_401(spectra_stack):
    for headers in (
        {},
        {"Authorization": "Bearer spk_not-a-real-key"},
        {"Authorization": "Basic abc"},
        {"Authorization": "spk_not-a-real-key"},  # the key without "Bearer "
        {"x-api-key": "spk_not-a-real-key"},
    ):
        response = requests.post(
            spectra_stack.api_url + "/v1/queries", json={"sql": "select 1"}, headers=headers, timeout=10
        )
        error = error_of(response, 401)  # the template's GatewayResponses
        assert error["code"] == "unauthorized", headers
        assert "send Authorization: Bearer <API key or token>" in error["message"]  # what to do (newcomer review)


def test_openapi_is_served_without_a_key(spectra_stack):
    document = requests.get(spectra_stack.api_url + "/v1/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/queries", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results"} <= set(document["paths"])
    assert "QueryRequest" in json.dumps(document["components"])
    # the base its operations are under, as a client resolves it against the document's URL: the stage on an
    # execute-api URL (the template's ApiUrl; the local gateway serves both), the root elsewhere (it said "/" under
    # the stage too, so a client generated from <ApiUrl>/v1/openapi.json called the API without it)
    assert document["servers"] == [{"url": "/"}]
    staged = requests.get(spectra_stack.api_url + "/dev/v1/openapi.json", timeout=10).json()
    assert staged["servers"] == [{"url": "/dev"}] and staged["paths"] == document["paths"]


def test_idempotency_key_returns_the_same_job(new_tenant):
    alice, bob = new_tenant(), new_tenant()
    key = str(uuid.uuid4())
    first = alice.request("POST", "/v1/queries", json={"sql": "select 1"}, headers={"Idempotency-Key": key})
    again = alice.request("POST", "/v1/queries", json={"sql": "select 1"}, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    # the same key from another tenant is another job
    other = bob.request("POST", "/v1/queries", json={"sql": "select 1"}, headers={"Idempotency-Key": key})
    assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]
    # the same key for a different request is a conflict, not a silent replay
    different = alice.request("POST", "/v1/queries", json={"sql": "select 2"}, headers={"Idempotency-Key": key})
    assert error_of(different, 409)["details"]["job_id"] == first.json()["job_id"]


def test_list_jobs_newest_first_with_pagination_and_status_filter(new_tenant):
    client = new_tenant()
    ids = [client.submit(f"select {i}")["job_id"] for i in range(5)]
    failed = client.submit("select * from missing_table_for_listing")["job_id"]
    for job_id in [*ids, failed]:
        client.wait(job_id)

    pages, token = [], None
    while True:
        params = {"limit": 2, **({"next_token": token} if token else {})}
        body = client.request("GET", "/v1/jobs", params=params).json()
        pages.append([job["job_id"] for job in body["jobs"]])
        token = body["next_token"]
        if not token:
            break
    listed = [job_id for page in pages for job_id in page]
    assert listed == [failed, *reversed(ids)]
    assert all(len(page) <= 2 for page in pages)

    only_failed = client.request("GET", "/v1/jobs", params={"status": "FAILED"}).json()["jobs"]
    assert [job["job_id"] for job in only_failed] == [failed]
    assert error_of(client.request("GET", "/v1/jobs", params={"next_token": "garbage!"}), 400)
    assert error_of(client.request("GET", "/v1/jobs", params={"status": "NOPE"}), 400)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "json"])
def test_result_files_in_each_format(new_tenant, fmt):
    client = new_tenant()
    sql = "select g as n, 'row ' || g as label, g * 0.5 as half from generate_series(1, 2500) as g order by g"
    job = client.wait(client.submit(sql, format=fmt)["job_id"])
    assert job["status"] == "COMPLETED", job
    results = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()
    assert results["row_count"] == 2500
    assert "rows" not in results or results["rows"] is None  # 2500 rows is over the inline limit
    (part,) = results["files"]
    data = requests.get(part["url"], timeout=30).content
    assert len(data) == part["bytes"]
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        rows = [(r["n"], r["label"]) for r in table.to_pylist()]
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(gzip.decompress(data).decode()))
        rows = [(int(r["n"]), r["label"]) for r in reader]
    else:
        rows = [(r["n"], r["label"]) for r in map(json.loads, gzip.decompress(data).decode().splitlines())]
    assert rows == [(i, f"row {i}") for i in range(1, 2501)]


def test_parameters_are_bound_not_spliced(new_tenant):
    client = new_tenant()
    job = client.wait(
        client.submit("select :who as who, length(:who) as n", parameters=[{"name": "who", "value": "o'brien; --"}])[
            "job_id"
        ]
    )
    assert job["status"] == "COMPLETED", job
    rows = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"]
    assert rows == [["o'brien; --", 11]]


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("select NULL::varchar as a", [[None]]),
        ("select ''::varchar as a", [[""]]),
        ("select NULL::varchar as a union all select '' union all select 'z'", [[None], [""], ["z"]]),
        # the first row spells the column names: data, not a header line
        (
            "select * from (values ('item', 'n'), ('', NULL), (NULL, ''), ('a,\"b', 'c')) as t(item, n)",
            [["item", "n"], ["", None], [None, ""], ['a,"b', "c"]],
        ),
    ],
)
def test_nulls_empty_strings_and_header_lookalikes_survive(new_tenant, sql, rows):
    client = new_tenant()
    job = client.wait(client.submit(sql)["job_id"])
    assert job["status"] == "COMPLETED", job
    assert job["row_count"] == len(rows)
    assert client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"] == rows


def test_unparseable_sql_is_a_400_not_a_crash(new_tenant):
    client = new_tenant()
    for sql in ["select 'unterminated", "select $$x", "EXPLAIN ANALYZE DELETE FROM t"]:
        error = error_of(client.request("POST", "/v1/queries", json={"sql": sql}), 400)
        assert error["code"] == "sql_rejected", sql


def test_oversized_parameters_are_413(new_tenant):
    client = new_tenant()
    params = [{"name": f"p{i}", "value": "x" * 60_000} for i in range(3)]
    error = error_of(client.request("POST", "/v1/queries", json={"sql": "select :p0", "parameters": params}), 413)
    assert error["code"] == "payload_too_large"


def test_one_odd_value_costs_only_its_own_column_its_type(new_tenant):
    client = new_tenant()
    sql = (
        "select 'infinity'::timestamp as never, true as flag, 1.50::numeric(10,2) as price, "
        "timestamp '2026-01-02 03:04:05' as at, 'NaN'::numeric as nan, interval '1 day' as span"
    )
    inline = client.wait(client.submit(sql)["job_id"])
    rows = client.request("GET", f"/v1/jobs/{inline['job_id']}/results").json()["rows"]
    assert rows == [["infinity", True, "1.50", "2026-01-02T03:04:05", "NaN", "1 day"]]
    job = client.wait(client.submit(sql, format="parquet")["job_id"])
    assert job["status"] == "COMPLETED", job
    results = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()
    table = pq.read_table(io.BytesIO(requests.get(results["files"][0]["url"], timeout=30).content))
    types = {field.name: str(field.type) for field in table.schema}
    assert types == {
        "never": "string",
        "flag": "bool",
        "price": "decimal128(10, 2)",
        "at": "timestamp[us]",
        "nan": "string",
        "span": "string",
    }


def test_a_body_that_is_not_json_by_content_type_is_415(new_tenant):
    client = new_tenant()
    response = client.request("POST", "/v1/queries", data='{"sql": "select 1"}', headers={"Content-Type": "text/plain"})
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_an_unknown_route_is_404_in_the_error_shape(spectra_stack):
    response = requests.get(spectra_stack.api_url + "/v2/nothing/here", timeout=10)
    assert error_of(response, 404)["code"] == "not_found"  # the template's MISSING_AUTHENTICATION_TOKEN response
