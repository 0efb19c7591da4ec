"""Submit reads only an upload's header; the worker decodes it, and a corrupt body fails the job
with the reason."""
from __future__ import annotations

import fake_pipeline
import httpx
from svc_helpers import jpeg, submit, wait_for


def test_corrupt_body_fails_the_job_with_the_reason(make_settings, start_api, start_worker):
    data = bytearray(jpeg(300, 200))
    i = data.index(b"\xff\xc4")  # a Huffman table: the header still reads, the pixels cannot decode
    data[i + 5:i + 21] = b"\xff" * 16
    settings = make_settings()
    api = start_api(settings)
    r = submit(api.url, bytes(data))
    assert r.status_code == 202, r.text  # nothing decoded at submit
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.001, calls=calls))
    job = wait_for(lambda: (j := httpx.get(f"{api.url}/v1/jobs/{r.json()['job_id']}").json())["status"] == "failed"
                   and j)
    assert "corrupt" in job["error"] and "upload the complete file" in job["error"]
    assert calls == []  # the pipeline never saw it
    stats = httpx.get(f"{api.url}/metrics").text
    assert 'restyle_job_failures_total{reason="rejected"} 1.0' in stats


def test_jpeg_with_trailing_bytes_is_decoded_at_submit(make_settings, start_api):
    api = start_api(make_settings())
    truncated = jpeg(300, 200)
    r = submit(api.url, truncated[:len(truncated) // 2])  # no end marker: decoded now, refused now
    assert r.status_code == 422 and r.json()["error"] == "invalid_image" and "truncated" in r.json()["detail"]
    appended = truncated + b"\x00" * 64 + b"motion photo"  # phones append data after the end marker
    assert submit(api.url, appended).status_code == 202
