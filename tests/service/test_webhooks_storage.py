"""Webhooks against a local receiver, the guard against private targets; storage (local + S3 on moto); retention."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fake_pipeline
import httpx
import pytest
from svc_helpers import jpeg, sse_events, submit, wait_for

from client_api import webhooks
from client_api.jobs_store import job_key
from client_api.storage import LocalStorage, S3Storage, make_storage, original_key, result_key

SECRET = "whsec-test"


@pytest.fixture
def receiver():
    """A real HTTP server that fails the first `fail_first` deliveries with 503."""
    got: list = []

    class Handler(BaseHTTPRequestHandler):
        fail_first = 2

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            code = 503 if len(got) <= Handler.fail_first else 200
            self.send_response(code)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.got = got
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    yield srv
    srv.shutdown()


def test_webhook_signed_and_retried(make_settings, start_api, start_worker, receiver):
    settings = make_settings(webhook_secret=SECRET, webhook_max_attempts=4, webhook_allow_private=True)
    api = start_api(settings)
    start_worker(settings, fake_pipeline.make(0.01))
    job_id = submit(api.url, jpeg(), webhook_url=receiver.url).json()["job_id"]
    wait_for(lambda: len(receiver.got) == 3, timeout=20)  # 503, 503, then 200
    time.sleep(0.3)
    assert len(receiver.got) == 3  # no more after success
    headers, body = receiver.got[-1]
    assert webhooks.verify(SECRET, headers["X-Restyle-Timestamp"], body, headers["X-Restyle-Signature"])
    assert not webhooks.verify("wrong", headers["X-Restyle-Timestamp"], body, headers["X-Restyle-Signature"])
    assert not webhooks.verify(SECRET, headers["X-Restyle-Timestamp"], body + b" ", headers["X-Restyle-Signature"])
    payload = json.loads(body)
    assert payload["job_id"] == job_id and payload["status"] == "completed"
    assert httpx.get(payload["result"]["transformed_url"]).status_code == 200  # links valid for the receiver
    assert [h["X-Restyle-Attempt"] for h, _ in receiver.got] == ["1", "2", "3"]


def test_webhook_on_cancel_and_gives_up(make_settings, start_api, receiver):
    settings = make_settings(webhook_secret=SECRET, webhook_max_attempts=2, webhook_allow_private=True)
    api = start_api(settings)
    job_id = submit(api.url, jpeg(), webhook_url=receiver.url).json()["job_id"]
    httpx.delete(f"{api.url}/v1/jobs/{job_id}")
    wait_for(lambda: len(receiver.got) == 2)
    time.sleep(0.3)
    assert len(receiver.got) == 2  # both 503: stops after max attempts
    assert json.loads(receiver.got[0][1])["status"] == "canceled"


@pytest.mark.parametrize("url,code,detail", [
    ("http://127.0.0.1:9/hook", "webhook_url_not_public", "a loopback address (127.0.0.1)"),
    ("http://localhost/hook", "webhook_url_not_public", "loopback address"),
    ("http://0x7f000001/hook", "webhook_url_not_public", "a loopback address (127.0.0.1)"),
    ("http://10.0.0.5/hook", "webhook_url_not_public",
     "webhook_url host resolves to a private address (10.0.0.5); webhooks must reach a public host"),
    ("http://169.254.169.254/latest/meta-data/", "webhook_url_not_public", "a link-local address (169.254.169.254)"),
    ("http://[::1]:8080/", "webhook_url_not_public", "a loopback address (::1)"),
    ("http://[::ffff:192.168.1.2]/", "webhook_url_not_public", "a private address (::ffff:192.168.1.2)"),
    ("http://0.0.0.0/", "webhook_url_not_public", "an unspecified address"),
    ("http://224.0.0.1/", "webhook_url_not_public", "a multicast address"),
    ("http://100.64.0.1/", "webhook_url_not_public", "a non-public address"),
    ("file:///etc/passwd", "invalid_webhook_url", "absolute http(s) URL"),
    ("gopher://93.184.216.34/", "invalid_webhook_url", "absolute http(s) URL"),
    ("http://nonexistent.invalid/hook", "webhook_url_unresolvable", "does not resolve"),
])
def test_webhook_to_non_public_host_refused(make_settings, start_api, rdb, url, code, detail):
    """Default settings: a webhook must reach a public host; anything else is a 422 and no job."""
    api = start_api(make_settings(webhook_secret=SECRET))
    r = submit(api.url, jpeg(), webhook_url=url)
    assert r.status_code == 422 and r.json()["error"] == code and detail in r.json()["detail"], r.text
    assert [k for k in rdb.keys("job:*") if k != "job:stats"] == [] and not rdb.exists(api.settings.queue_stream)
    assert not (api.settings.local_storage_dir / "uploads").exists()


def test_webhook_to_public_address_accepted(make_settings, start_api):
    api = start_api(make_settings(webhook_secret=SECRET))
    assert submit(api.url, jpeg(), webhook_url="https://93.184.216.34/hook").status_code == 202  # a literal: no DNS


def test_deliver_checks_the_address_and_connects_to_it(receiver, caplog):
    """deliver() resolves the host itself: a private answer is refused without a request (and not
    retried); allowed, it connects to the checked address and still sends the original Host."""
    url = receiver.url.replace("127.0.0.1", "localhost")  # a host name that resolves privately
    kw = dict(secret=SECRET, max_attempts=3, backoff_s=0.01, backoff_max_s=0.01, timeout_s=5)
    with caplog.at_level(logging.WARNING, logger="restyle.webhooks"):
        assert asyncio.run(webhooks.deliver(url, {"job_id": "x"}, **kw)) is False
    assert receiver.got == [] and len(caplog.records) == 1
    assert asyncio.run(webhooks.deliver(url, {"job_id": "x"}, allow_private=True, **kw)) is True
    assert len(receiver.got) == 3  # 503, 503, 200
    assert receiver.got[-1][0]["Host"] == f"localhost:{receiver.server_address[1]}"


def test_worker_rechecks_the_address_before_delivery(make_settings, start_api, start_worker, receiver, caplog):
    """DNS may answer differently at delivery than at submit: the worker checks again.

    Played here by an API that accepts private targets and a worker with the default settings."""
    api = start_api(make_settings(webhook_secret=SECRET, webhook_allow_private=True))
    start_worker(make_settings(webhook_secret=SECRET), fake_pipeline.make(0.01))
    with caplog.at_level(logging.WARNING, logger="restyle.webhooks"):
        job_id = submit(api.url, jpeg(), webhook_url=receiver.url.replace("127.0.0.1", "localhost")).json()["job_id"]
        wait_for(lambda: any("resolves to a loopback address" in r.getMessage() for r in caplog.records))
    assert httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "completed"
    time.sleep(0.3)
    assert receiver.got == []


def test_local_storage_links(tmp_path):
    store = LocalStorage(tmp_path, b"k")
    store.put(original_key("a" * 32), b"img")
    assert store.get(original_key("a" * 32)) == b"img"
    url = store.url(original_key("a" * 32), base_url="http://h", expires_s=60)
    exp, sig = url.split("exp=")[1].split("&sig=")
    assert store.verify(original_key("a" * 32), int(exp), sig)
    assert not store.verify(result_key("a" * 32), int(exp), sig)          # signature bound to the key
    assert not store.verify(original_key("a" * 32), int(exp) - 3600, sig)  # bound to the expiry
    assert not store.verify(original_key("a" * 32), int(time.time()) - 1,
                            store.sign(original_key("a" * 32), int(time.time()) - 1))  # expired
    with pytest.raises(Exception):
        store.put("../etc/passwd", b"x")
    assert store.delete_prefix(f"uploads/{'a' * 32}/") == 1


def test_signed_link_route(make_settings, start_api, start_worker):
    settings = make_settings()
    api = start_api(settings)
    start_worker(settings, fake_pipeline.make(0.01))
    job_id = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "completed")
    url = httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["result"]["transformed_url"]
    assert httpx.get(url).status_code == 200
    assert httpx.get(url.replace("sig=", "sig=0")).status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 403
    assert httpx.get(f"{api.url}/files/../../etc/passwd").status_code == 404


def test_s3_storage_on_moto(s3_settings):
    store = make_storage(s3_settings)
    assert isinstance(store, S3Storage) and store.ready()
    key = original_key("b" * 32)
    store.put(key, b"jpeg-bytes")
    assert store.get(key) == b"jpeg-bytes"
    url = store.url(key, base_url="unused", expires_s=60)
    assert "X-Amz-Signature" in url and httpx.get(url).content == b"jpeg-bytes"  # pre-signed, private
    assert httpx.get(url.split("?")[0]).status_code in (401, 403)
    rules = store.apply_lifecycle(7, 30)["rules"]
    live = store.client.get_bucket_lifecycle_configuration(Bucket=store.bucket)["Rules"]
    assert {(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in live} == {("uploads/", 7), ("results/", 30)}
    assert rules
    assert store.delete_prefix(f"uploads/{'b' * 32}/") == 1
    with pytest.raises(Exception):
        store.get(key)


def test_cdn_domain_for_results(s3_settings):
    store = make_storage(s3_settings.model_copy(update={"cdn_domain": "cdn.example.com"}))
    assert store.url(result_key("c" * 32), base_url="x", expires_s=60) == \
        f"https://cdn.example.com/results/{'c' * 32}/transformed.jpg"
    assert "X-Amz-Signature" in store.url(original_key("c" * 32), base_url="x", expires_s=60)


def test_end_to_end_with_s3(s3_settings, start_api, start_worker):
    api = start_api(s3_settings)
    start_worker(s3_settings, fake_pipeline.make(0.01))
    job_id = submit(api.url, jpeg(300, 200)).json()["job_id"]
    final = sse_events(api.url, job_id)[-1][1]
    assert final["status"] == "completed"
    assert httpx.get(final["result"]["transformed_url"]).status_code == 200
    assert httpx.delete(f"{api.url}/v1/jobs/{job_id}/data").status_code == 204
    assert httpx.get(final["result"]["transformed_url"]).status_code == 404


def test_retention(make_settings, start_api, start_worker, rdb, tmp_path):
    settings = make_settings(job_ttl_s=2)
    api = start_api(settings)
    start_worker(settings, fake_pipeline.make(0.01))
    job_id = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "completed")
    assert 0 < rdb.ttl(job_key(job_id)) <= 2
    wait_for(lambda: httpx.get(f"{api.url}/v1/jobs/{job_id}").status_code == 404, timeout=5)
    # the local store's lifecycle sweep: uploads older than 7 days go, results stay until 30
    store = make_storage(settings)
    old = time.time() - 8 * 86400
    for p in (settings.local_storage_dir / "uploads").glob("*/*"):
        os.utime(p, (old, old))
    for p in (settings.local_storage_dir / "results").glob("*/*"):
        os.utime(p, (old, old))
    assert store.apply_lifecycle(7, 30) == {"uploads": 1, "results": 0}
    assert not (settings.local_storage_dir / "uploads" / job_id).exists()
    assert (settings.local_storage_dir / "results" / job_id / "transformed.jpg").exists()
