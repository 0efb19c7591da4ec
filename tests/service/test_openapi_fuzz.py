"""Schemathesis against the API's own OpenAPI document, served by uvicorn with real Redis behind it.

Every operation, with no key, a wrong key, a user key and the admin key: never a 5xx, and
every answer is one the document promises (status, content type, body schema). After each
request nothing is half-made: a job that can still run has its queue entry and its upload,
and every stored file belongs to a job. No worker runs here, so created jobs stay queued.
"""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)
from svc_helpers import jpeg, submit

from client_api.config import Settings
from client_api.jobs_store import STATS_KEY, TERMINAL
from client_api.main import create_app
from restyle.styles import STYLES

KEY, ADMIN = "fuzz-key", "fuzz-admin"
PHOTO = jpeg()
# URL-ish strings: schemes, IPv4/IPv6 literals, broken brackets and ports; hosts are numeric or
# localhost, so no answer depends on a DNS server
WEBHOOK_URLS = st.from_regex(
    r"(https?|ftp|file)://(\[?[0-9.:%\]]{0,24}|localhost)(:[0-9a-z]{0,6})?(/[a-z]{0,4})?", fullmatch=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# parametrize needs the document at collection time; the fixture checks the server serves this one
DOC = create_app(Settings(_env_file=None)).openapi()
schema = schemathesis.openapi.from_dict(DOC)


@pytest.fixture
def fuzz_api(make_settings, start_api):
    # webhooks on and private targets refused, so webhook_url goes through the SSRF check too
    api = start_api(make_settings(api_keys=KEY, admin_api_key=ADMIN, webhook_secret="whsec-fuzz",
                                  webhook_timeout_s=2, rate_limit_per_minute=100_000))
    assert httpx.get(f"{api.url}/openapi.json").json() == DOC
    return api


def make_job(base: str, status: str) -> str:
    job_id = submit(base, PHOTO, key=KEY).json()["job_id"]
    if status == "canceled":
        httpx.delete(f"{base}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"})
    return job_id


def assert_nothing_half_made(rdb, cfg: Settings) -> None:
    # the stream first: a job only moves towards terminal, and none is created between the reads
    queued = {fields["job_id"] for _, fields in rdb.xrange(cfg.queue_stream)}
    jobs = {key.removeprefix("job:"): rdb.hgetall(key) for key in rdb.scan_iter("job:*") if key != STATS_KEY}
    storage = cfg.local_storage_dir
    for job_id, job in jobs.items():
        if job["status"] not in TERMINAL:  # a worker must still be able to take and run it
            assert job_id in queued, f"job {job_id} is {job['status']} but not in the queue"
            assert (storage / job["original_key"]).is_file(), f"job {job_id} has no upload"
    for path in storage.glob("*/*"):
        assert path.name in jobs, f"{path} belongs to no job"


def call(case, api, rdb, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ready = case.path == "/ready" and case.method == "GET"
    r = case.call_and_validate(base_url=api.url, headers=headers, checks=CHECKS, timeout=10, allow_redirects=False)
    if ready:  # no Triton in this stack: degraded, still taking jobs
        assert r.status_code == 200 and r.json()["missing"] == ["triton"]
    assert_nothing_half_made(rdb, api.settings)


@schema.parametrize()
@settings(phases=[Phase.explicit], deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_openapi_coverage(case, fuzz_api, rdb):
    """Schemathesis' coverage phase: boundary values, missing and mistyped fields, other methods."""
    call(case, fuzz_api, rdb, ADMIN)  # a valid key everywhere (the admin key is also a user key)


@schema.parametrize()
@schema.given(key=st.sampled_from([KEY, KEY, ADMIN, ADMIN, None, "wrong-key"]),  # mostly keys that pass
              form=st.none() | st.fixed_dictionaries({"style": st.sampled_from(sorted(STYLES))},
                                                     optional={"webhook_url": WEBHOOK_URLS}),
              job=st.sampled_from([None, "queued", "canceled"]))
@settings(max_examples=50, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case, key, form, job, fuzz_api, rdb):
    """Random requests, positive and negative, with each kind of key (given() turns off the coverage phase)."""
    # Steer some examples past the first refusal: a real photo and style reach the webhook check
    # and job creation, a real job id reaches cancel/result/data/events (random ids meet 404).
    if form and isinstance(case.body, dict) and "file" in case.body:
        case.body.update(file=PHOTO, **form)
    if job and "job_id" in (case.path_parameters or {}):
        # the event stream of a queued job stays open until it ends, which never happens here
        case.path_parameters["job_id"] = make_job(fuzz_api.url, "canceled" if case.path.endswith("/events")
                                                  else job)
    call(case, fuzz_api, rdb, key)


def test_half_made_check_can_fail(make_settings, rdb):
    """The check above is not vacuous: a queued job without its queue entry, or an orphan file, fails it."""
    cfg = make_settings()
    rdb.hset("job:abc", mapping={"status": "queued", "original_key": "uploads/abc/original.jpg"})
    with pytest.raises(AssertionError, match="not in the queue"):
        assert_nothing_half_made(rdb, cfg)
    rdb.delete("job:abc")
    (cfg.local_storage_dir / "uploads" / "abc").mkdir(parents=True)
    with pytest.raises(AssertionError, match="belongs to no job"):
        assert_nothing_half_made(rdb, cfg)
