"""Keys and ownership, rate limiting, hostile uploads, idempotency, Redis down."""
from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from PIL import Image
from svc_helpers import jpeg, submit

from client_api.config import hash_key
from client_api.jobs_store import job_key

KEY_A, KEY_B, ADMIN = "key-a-secret", "key-b-secret", "admin-secret"


@pytest.fixture
def keyed(make_settings, start_api):
    # one plain key and one given as its sha256, as documented
    settings = make_settings(api_keys=f"{KEY_A},sha256:{hash_key(KEY_B)}", admin_api_key=ADMIN,
                             rate_limit_per_minute=3)
    return start_api(settings)


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_keys_and_ownership(keyed):
    base = keyed.url
    assert submit(base, jpeg()).status_code == 401
    assert submit(base, jpeg(), key="wrong").status_code == 401
    r = submit(base, jpeg(), key=KEY_A)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth(KEY_A)).status_code == 200
    # another key sees nothing: status, events, result, cancel, data
    for method, path in [("GET", ""), ("GET", "/events"), ("GET", "/result"), ("DELETE", ""), ("DELETE", "/data")]:
        resp = httpx.request(method, f"{base}/v1/jobs/{job_id}{path}", headers=auth(KEY_B))
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", (method, path)
    assert httpx.get(f"{base}/transform/status/{job_id}", headers=auth(KEY_B)).status_code == 404
    from svc_helpers import ws_events
    assert ws_events(base, job_id, key=KEY_B)[0]["data"]["error"] == "job not found"
    # admin endpoints: admin key only
    assert httpx.get(f"{base}/v1/admin/stats", headers=auth(KEY_A)).status_code == 403
    assert httpx.get(f"{base}/v1/admin/stats", headers=auth(ADMIN)).json()["total"] == 1
    # the owner can cancel (nobody works the queue here)
    assert httpx.delete(f"{base}/v1/jobs/{job_id}", headers=auth(KEY_A)).json()["status"] == "canceled"


def test_keys_are_not_stored_in_redis(keyed, rdb):
    job_id = submit(keyed.url, jpeg(), key=KEY_A).json()["job_id"]
    dump = str(rdb.hgetall(job_key(job_id)))
    assert KEY_A not in dump and hash_key(KEY_A) not in dump


def test_rate_limit(keyed):
    # refused submissions spend no tokens
    assert {submit(keyed.url, jpeg(), key=KEY_A, style="gothic").status_code for _ in range(4)} == {422}
    codes = [submit(keyed.url, jpeg(), key=KEY_A).status_code for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    r = submit(keyed.url, jpeg(), key=KEY_A)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 21
    assert submit(keyed.url, jpeg(), key=KEY_B).status_code == 202  # buckets are per key


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims w×h pixels (a decompression bomb header) with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def anon(make_settings, start_api):
    return start_api(make_settings(max_upload_bytes=200_000, max_pixels=2_000_000))


@pytest.mark.parametrize("data,status,code", [
    (b"", 422, "empty_file"),
    (b"GIF89a" + b"\0" * 100, 415, "unsupported_media_type"),
    (b"%PDF-1.4 hello", 415, "unsupported_media_type"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 50, 422, "invalid_image"),                      # JPEG magic, no image
    (_png_header(30000, 30000), 413, "too_many_pixels"),                          # decompression bomb
    (_png_header(2000, 1001), 413, "too_many_pixels"),
    (b"\xff\xd8\xff" + b"\0" * 300_000, 413, "file_too_large"),
    ("tiny", 422, "invalid_image"),
    ("truncated", 422, "invalid_image"),
])
def test_bad_uploads(anon, rdb, data, status, code):
    if data == "tiny":
        data = jpeg(16, 16)
    elif data == "truncated":
        data = jpeg(300, 200)[:400]
    r = submit(anon.url, data)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["detail"]
    assert rdb.keys("job:*") == [] or rdb.keys("job:*") == ["job:stats"]  # nothing half-made
    assert not list((anon.settings.local_storage_dir / "uploads").glob("*/*")) \
        if (anon.settings.local_storage_dir / "uploads").exists() else True


def test_accepted_types_exif_and_downsizing(make_settings, start_api, start_worker):
    import fake_pipeline
    from svc_helpers import image_size, wait_for

    settings = make_settings(working_max_side=256)
    api = start_api(settings)
    for fmt in ("PNG", "WEBP"):  # stored as JPEG, at their own size
        job_id = submit(api.url, jpeg(300, 200, fmt=fmt)).json()["job_id"]
        stored = (api.settings.local_storage_dir / "uploads" / job_id / "original.jpg").read_bytes()
        assert stored[:3] == b"\xff\xd8\xff" and image_size(stored) == (300, 200)
    # EXIF orientation 6 (rotate 90°): a 400×200 landscape file is a 200×400 portrait photo
    img = Image.new("RGB", (400, 200), (10, 200, 30))
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    job_id = submit(api.url, buf.getvalue()).json()["job_id"]
    stored = api.settings.local_storage_dir / "uploads" / job_id / "original.jpg"
    assert stored.read_bytes() == buf.getvalue()  # a complete JPEG is kept as sent (nothing decoded at submit)
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.001, calls=calls))
    wait_for(lambda: len(calls) == 3)
    # the worker hands the pipeline the photo oriented, then long side to the working maximum
    assert [image_size(c.image) for c in calls] == [(256, 171), (256, 171), (128, 256)]


def test_bad_fields(anon):
    cases = [({"style": "baroque-disco"}, "unknown_style"), ({"style": "modern", "steps": "0"}, "validation_error"),
             ({"style": "modern", "steps": "51"}, "validation_error"), ({"style": "modern", "mode": "x"}, "validation_error"),
             ({"style": "modern", "seed": "-1"}, "validation_error"),
             # what the pipeline would refuse later is refused at submit (restyle.contract)
             ({"style": "modern", "prompt": "x" * 400}, "validation_error"),
             ({"style": "modern", "room_type": "garage"}, "invalid_room_type"),
             ({"style": "modern", "speed": "turbo"}, "validation_error"),
             ({"style": "modern", "webhook_url": "ftp://x"}, "invalid_webhook_url"),
             # urlsplit raises on these: they used to escape as 500s
             ({"style": "modern", "webhook_url": "http://[::1"}, "invalid_webhook_url"),
             ({"style": "modern", "webhook_url": "http://[zzz]/"}, "invalid_webhook_url"),
             ({"style": "modern", "webhook_url": "http://x.test:99999/"}, "invalid_webhook_url"),
             ({"style": "modern", "webhook_url": "http://x.test/hook"}, "webhooks_disabled")]
    for form, code in cases:
        r = httpx.post(f"{anon.url}/v1/jobs", data=form, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        assert r.status_code == 422 and r.json()["error"] == code, (form, r.text)
    r = httpx.post(f"{anon.url}/v1/jobs", data={"style": "modern"})
    assert r.status_code == 422 and r.json()["error"] == "photo_required"  # neither a file nor from_job


def test_idempotency(anon):
    h = {"Idempotency-Key": "abc-1"}
    first = submit(anon.url, jpeg(), headers=h)
    again = submit(anon.url, jpeg(), headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    other = submit(anon.url, jpeg(), style="boho", headers=h)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    assert submit(anon.url, jpeg(), headers={"Idempotency-Key": "abc-2"}).json()["job_id"] != first.json()["job_id"]
    # a refused upload does not burn the key
    assert submit(anon.url, b"nope", headers={"Idempotency-Key": "abc-3"}).status_code == 415
    assert submit(anon.url, jpeg(), headers={"Idempotency-Key": "abc-3"}).status_code == 202


def test_redis_down_gives_503_and_nothing_half_made(make_settings, start_api, tmp_path):
    from restyle.server_ports import free_port

    api = start_api(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    r = submit(api.url, jpeg())
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable" and r.headers["Retry-After"]
    assert httpx.get(f"{api.url}/v1/jobs/abc").status_code == 503
    assert not (api.settings.local_storage_dir / "uploads").exists() or \
        not any((api.settings.local_storage_dir / "uploads").iterdir())
    assert httpx.get(f"{api.url}/ready").json()["checks"]["redis"] is False
    assert httpx.get(f"{api.url}/health").status_code == 200


def test_redis_refuses_the_record_after_upload_nothing_half_made(make_settings, start_api, rdb, redis_url):
    """Redis accepts the rate limit and idempotency writes, then refuses the record+enqueue
    MULTI after the upload was stored (here an ACL that may not write job:* or the queue; in
    production: OOM under maxmemory, a read-only replica): 503, the upload removed again."""
    rdb.execute_command("ACL", "SETUSER", "no-jobs", "on", ">pw", "+@all", "allchannels", "resetkeys",
                        "%R~*", "%RW~ratelimit:*", "%RW~idem:*")
    try:
        api = start_api(make_settings(redis_url=redis_url.replace("redis://", "redis://no-jobs:pw@")))
        r = submit(api.url, jpeg(), headers={"Idempotency-Key": "k"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "store_unavailable" and r.headers["Retry-After"]
        assert not any((api.settings.local_storage_dir / "uploads").iterdir())
        assert rdb.keys("idem:*") == [] and rdb.keys("job:*") in ([], ["job:stats"])
        assert rdb.xlen(api.settings.queue_stream) == 0 if rdb.exists(api.settings.queue_stream) else True
        assert httpx.get(f"{api.url}/health").status_code == 200
    finally:
        rdb.execute_command("ACL", "DELUSER", "no-jobs")


def test_cors_and_huge_body(make_settings, start_api):
    api = start_api(make_settings(cors_origins="https://app.example"))
    pre = httpx.options(f"{api.url}/v1/jobs", headers={"Origin": "https://app.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    r = httpx.post(f"{api.url}/v1/jobs", content=b"x" * (12 * 1024 * 1024),
                   headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.json()["error"] == "file_too_large"


def test_hostile_requests_never_5xx(anon):
    """A quick hand-made sweep of odd inputs: 4xx, never 5xx (test_openapi_fuzz.py fuzzes the whole API)."""
    base = anon.url
    weird = ["%00", "..%2F..%2Fetc", "ü" * 10, "a" * 5000, "' OR 1=1 --", "%ff%fe"]
    reqs = []
    for w in weird:
        reqs += [("GET", f"/v1/jobs/{w}"), ("GET", f"/v1/jobs/{w}/events"), ("DELETE", f"/v1/jobs/{w}"),
                 ("DELETE", f"/v1/jobs/{w}/data"), ("GET", f"/v1/jobs/{w}/result?kind=zzz"),
                 ("GET", f"/files/{w}?exp=99999999999999999999&sig={w}"), ("GET", f"/transform/status/{w}")]
    reqs += [("POST", "/v1/jobs"), ("PUT", "/v1/jobs"), ("POST", "/v1/styles")]
    for method, path in reqs:
        r = httpx.request(method, base + path)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
        assert "error" in r.json()
    for form in [{"style": "modern", "seed": "1e400"}, {"style": "\x00"}, {"style": "modern", "steps": "9" * 40},
                 {"style": "modern", "prompt": "x" * 10_000}, {"style": "modern", "room_type": "r" * 65}]:
        r = httpx.post(f"{base}/v1/jobs", data=form, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        assert r.status_code == 422, (form, r.text)
    r = httpx.post(f"{base}/v1/jobs", content=b"garbage", headers={"Content-Type": "multipart/form-data"})
    assert 400 <= r.status_code < 500
    r = httpx.post(f"{base}/v1/jobs", json={"style": "modern"})
    assert r.status_code == 422
