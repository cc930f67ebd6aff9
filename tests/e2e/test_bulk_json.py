"""Bulk jobs with ``contentType: "JSON"`` on the whole stack: JSON records put as batches (an array, and JSON Lines
in gzip) load as a CSV job's rows would, with the same accounting and CSV result files; a null is NULL (an empty
string stays one), numbers keep their digits; a batch the load could not read is a 400 naming the record, before
anything is stored; and a JSON job takes no CSV batch and no upload URL."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.e2e.test_bulk_ingest import EXISTING, check_accounting
from tests.fixtures.bulk import BulkClient

pytestmark = pytest.mark.e2e


def put_json(client: BulkClient, job_id: str, body: bytes, *, media: str = "application/json", **headers: str):
    return client.api.request(
        "PUT", f"/v1/bulk/jobs/{job_id}/batches", data=body, headers={"Content-Type": media, **headers}
    )


def test_a_json_upsert_loads_as_a_csv_one_and_lists_bad_records_as_rewritten(bulk_tenant, warehouse):
    client = bulk_tenant(EXISTING)
    job = client.create("upsert", externalIdFieldName="email", contentType="JSON")
    assert job["contentType"] == "JSON" and job["state"] == "Open"
    first = [
        {"email": "ann@x", "name": "Ann B", "city": None, "score": 12},
        {"email": "new@x", "name": "Neo", "city": "", "score": 1},
        {"email": None, "name": "Nobody", "city": "Nil", "score": 2},  # a null id is a missing one
    ]
    assert put_json(client, job["id"], json.dumps(first).encode()).status_code == 201
    lines = [
        {"score": "x", "city": "Nil", "name": "Bad", "email": "bad@x"},  # the same fields in another order
        {"email": "big@x", "name": "Big", "city": "Oslo", "score": 12345678901},  # past int: refused by the load
    ]
    ndjson = gzip.compress("\n".join(json.dumps(line) for line in lines).encode())
    response = put_json(client, job["id"], ndjson, media="application/x-ndjson", **{"Content-Encoding": "gzip"})
    assert response.status_code == 201, response.text
    client.close(job["id"])
    done = client.wait(job["id"])
    assert done["state"] == "JobComplete", done
    sent = [  # the records as their batches were stored: the keys sorted, null as COPY's \N
        ["city", "email", "name", "score"],
        ["\\N", "ann@x", "Ann B", "12"],
        ["", "new@x", "Neo", "1"],
        ["Nil", "", "Nobody", "2"],
        ["Nil", "bad@x", "Bad", "x"],
        ["Oslo", "big@x", "Big", "12345678901"],
    ]
    successful, failed, _ = check_accounting(client, done, sent)
    assert sorted(r[:2] for r in successful) == [["ann@x", "false"], ["new@x", "true"]]
    reasons = sorted((r[0], r[1]) for r in failed)
    assert [r[0] for r in reasons] == ["", "bad@x", "big@x"]
    assert reasons[0][1] == "missing external id" and all("score" in r[1] for r in reasons[1:]), reasons
    assert client.rows(warehouse) == [
        ("ann@x", "Ann B", None, 12, None),  # null is NULL
        ("bob@x", "Bob", "Rome", 20, None),
        ("cid@x", "Cid", "Lima", 30, None),
        ("new@x", "Neo", "", 1, None),  # and "" an empty string
    ]


def test_a_json_insert_loads_a_null_external_id_as_null_not_as_an_empty_string(bulk_tenant, warehouse):
    # an insert stages nothing on its id: its null is NULL like any other, which the NOT NULL email column refuses
    # (an empty field would have loaded '' past it)
    client = bulk_tenant()
    job = client.create("insert", externalIdFieldName="email", contentType="JSON")
    records = [{"email": None, "name": "Nobody"}, {"email": "a@x", "name": "A"}]
    assert put_json(client, job["id"], json.dumps(records).encode()).status_code == 201
    client.close(job["id"])
    done = client.wait(job["id"])
    assert done["state"] == "JobComplete", done
    successful, failed, _ = check_accounting(client, done, [["email", "name"], ["\\N", "Nobody"], ["a@x", "A"]])
    assert [r[0] for r in successful] == ["a@x"]
    assert len(failed) == 1 and "email" in failed[0][1] and "null" in failed[0][1], failed
    assert [row[:2] for row in client.rows(warehouse)] == [("a@x", "A")]


def test_a_json_job_of_one_key_whose_values_are_empty_or_blank_strings_loads_them(bulk_tenant, warehouse):
    """Written to CSV as ``""`` and ``"  "``, its rows were taken for blank lines: the job failed no_rows, naming a
    .csv the client never sent."""
    client = bulk_tenant()
    client.use_table(warehouse, "notes", "v varchar(10)", "('z')")
    job = client.create("insert", contentType="JSON")
    assert put_json(client, job["id"], b'[{"v": ""}, {"v": "  "}]').status_code == 201
    client.close(job["id"])
    done = client.wait(job["id"])
    assert done["state"] == "JobComplete", done
    successful, failed, _ = check_accounting(client, done, [["v"], [""], ["  "]])
    assert (len(successful), failed) == (2, [])
    assert sorted(client.rows(warehouse)) == [("",), ("  ",), ("z",)]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'[{"email": "a@x", "name": "A"}, {"email": "b@x"}]', "record 2 has other fields than the first record"),
        (b'{"email": "a@x"}\n[1]', "line 2 is not a JSON object"),
        (b'{"email": "a@x", "email": "b@x"}', "the key 'email' is given twice"),
        (b'{"email": "a@x", "score": NaN}', "NaN is not a JSON number"),
        (b'{"email": "a@x",', "line 1 is not JSON"),
        (b"[]", "the batch has no records"),
    ],
)
def test_a_json_batch_the_load_could_not_read_is_refused_before_anything_is_stored(bulk_tenant, body, said):
    client = bulk_tenant()
    job = client.create("insert", contentType="JSON")
    response = put_json(client, job["id"], body)
    assert response.status_code == 400, response.text
    assert said in response.json()["error"]["message"]
    # nothing was stored: the job has no batch to load
    assert "has no data" in client.close(job["id"], expect=400)["error"]["message"]


def test_every_json_media_type_the_readme_lists_is_a_json_jobs_batch_and_not_a_csv_jobs(bulk_tenant, warehouse):
    """README lists four media types for a JSON job's batches (JSON Lines goes by three names): each is taken by a JSON
    job and loads its records, and each is refused 415 by a CSV job, which would otherwise store JSON as CSV."""
    media_types = ["application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines"]
    client = bulk_tenant()
    job = client.create("insert", contentType="JSON")
    csv_job = client.create("insert")
    for n, media in enumerate(media_types):
        body = json.dumps({"email": f"m{n}@x", "name": media}).encode()
        response = put_json(client, job["id"], body, media=media)
        assert response.status_code == 201, (media, response.text)
        response = put_json(client, csv_job["id"], body, media=media)
        assert response.status_code == 415 and "takes CSV" in response.json()["error"]["message"], media
    client.close(job["id"])
    done = client.wait(job["id"])
    assert done["state"] == "JobComplete", done
    assert sorted(row[:2] for row in client.rows(warehouse)) == [(f"m{n}@x", m) for n, m in enumerate(media_types)]


def test_a_json_job_takes_json_only_and_a_csv_job_csv_only(bulk_tenant):
    client = bulk_tenant()
    job = client.create("insert", contentType="JSON")
    response = put_json(client, job["id"], b"email,name\na@x,A\n", media="text/csv")
    assert response.status_code == 415 and "takes JSON" in response.json()["error"]["message"]
    response = client.api.request("POST", f"/v1/bulk/jobs/{job['id']}/uploads", json={})
    assert response.status_code == 400 and "PUT /v1/bulk/jobs" in response.json()["error"]["message"]
    csv_job = client.create("insert")
    response = put_json(client, csv_job["id"], b'[{"email": "a@x"}]')
    assert response.status_code == 415 and "takes CSV" in response.json()["error"]["message"]
    for fields in ({"operation": "query", "query": "select 1"}, {"columnDelimiter": "TAB"}, {"contentType": "XML"}):
        body = {"object": client.table, "operation": "insert", "contentType": "JSON", **fields}
        response = client.api.request("POST", "/v1/bulk/jobs", json=body)
        assert response.status_code == 400, response.text
