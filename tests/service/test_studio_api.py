"""What the studio needs from the API: own-job listing, downloads as attachments, from_job, maps, limits."""
from __future__ import annotations

import fake_pipeline
import httpx
import pytest
from svc_helpers import image_size, submit, wait_for

from client_api.owner_jobs import owner_key
from client_api.security import authenticate
from restyle.contract import MAX_STEPS, MODES, ROOM_TYPES, SPEEDS
from restyle.styles import STYLES

KEYS = ["alice-key", "bob-key"]


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def completed(base: str, job_id: str, key: str) -> dict:
    return wait_for(lambda: (j := httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth(key)).json())["status"]
                    == "completed" and j)


def listing(base: str, key: str, **params) -> dict:
    r = httpx.get(f"{base}/v1/jobs", headers=auth(key), params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def stack(make_settings, start_api, start_worker):
    settings = make_settings(api_keys=KEYS)
    start_worker(settings, fake_pipeline.make(0.01))
    return start_api(settings)


def test_listing_is_own_newest_first_paginated_and_cleaned(stack, photo, rdb):
    alice = [submit(stack.url, photo, key="alice-key").json()["job_id"] for _ in range(3)]
    bob = submit(stack.url, photo, key="bob-key").json()["job_id"]

    first = listing(stack.url, "alice-key", limit=2)
    assert [j["job_id"] for j in first["jobs"]] == alice[::-1][:2] and first["next_cursor"]
    second = listing(stack.url, "alice-key", limit=2, cursor=first["next_cursor"])
    assert [j["job_id"] for j in second["jobs"]] == alice[:1] and second["next_cursor"] is None
    assert [j["job_id"] for j in listing(stack.url, "bob-key")["jobs"]] == [bob]

    # another key neither sees nor deletes alice's jobs
    assert httpx.delete(f"{stack.url}/v1/jobs/{alice[0]}/data", headers=auth("bob-key")).status_code == 404
    assert httpx.delete(f"{stack.url}/v1/jobs/{alice[0]}/data", headers=auth("alice-key")).status_code == 204
    rdb.delete(f"job:{alice[1]}")  # as if the record had expired
    assert [j["job_id"] for j in listing(stack.url, "alice-key")["jobs"]] == [alice[2]]
    owner = authenticate(stack.settings, "alice-key")
    assert rdb.zrange(owner_key(owner), 0, -1) == [alice[2]]  # the index forgot both

    done = completed(stack.url, alice[2], "alice-key")
    listed = listing(stack.url, "alice-key")["jobs"][0]
    assert listed["status"] == "completed" and httpx.get(listed["result"]["thumbnail_url"]).status_code == 200
    assert done["result"]["download_url"].endswith(f"/v1/jobs/{alice[2]}/download")

    bad = httpx.get(f"{stack.url}/v1/jobs", headers=auth("alice-key"), params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_cursor"
    assert httpx.get(f"{stack.url}/v1/jobs").status_code == 401


def test_download_maps_and_another_style(stack, photo):
    first = submit(stack.url, photo, style="boho", key="alice-key").json()["job_id"]
    job = completed(stack.url, first, "alice-key")
    r = httpx.get(f"{stack.url}/v1/jobs/{first}/download", headers=auth("alice-key"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["content-disposition"] == f'attachment; filename="boho-{first}.jpg"'
    assert image_size(r.content) == image_size(photo)
    depth = httpx.get(f"{stack.url}/v1/jobs/{first}/download", params={"kind": "depth"}, headers=auth("alice-key"))
    assert depth.headers["content-disposition"] == f'attachment; filename="boho-{first}-depth.jpg"'
    for url in (job["result"]["depth_map_url"], job["result"]["edge_map_url"]):
        assert image_size(httpx.get(url).content) == image_size(photo)
    assert httpx.get(f"{stack.url}/v1/jobs/{first}/download", headers=auth("bob-key")).status_code == 404

    # another style from the same photo, without uploading it again; never from another key's job
    refused = httpx.post(f"{stack.url}/v1/jobs", data={"style": "coastal", "from_job": first}, headers=auth("bob-key"))
    assert refused.status_code == 404
    neither = httpx.post(f"{stack.url}/v1/jobs", data={"style": "coastal"}, headers=auth("alice-key"))
    assert neither.status_code == 422 and neither.json()["error"] == "photo_required"
    again = httpx.post(f"{stack.url}/v1/jobs", data={"style": "coastal", "from_job": first},
                       headers=auth("alice-key"))
    assert again.status_code == 202, again.text
    second = again.json()["job_id"]
    completed(stack.url, second, "alice-key")
    # the second job has its own copy: deleting the first one's data does not break it
    assert httpx.delete(f"{stack.url}/v1/jobs/{first}/data", headers=auth("alice-key")).status_code == 204
    original = httpx.get(f"{stack.url}/v1/jobs/{second}/download", params={"kind": "original"},
                         headers=auth("alice-key"))
    assert original.status_code == 200 and original.content == photo


def test_download_streams_from_s3(s3_settings, start_api, start_worker, photo):
    settings = s3_settings.model_copy(update={"api_keys": KEYS})
    start_worker(settings, fake_pipeline.make(0.01))
    api = start_api(settings)
    job_id = submit(api.url, photo, style="japandi", key="alice-key").json()["job_id"]
    completed(api.url, job_id, "alice-key")
    r = httpx.get(f"{api.url}/v1/jobs/{job_id}/download", headers=auth("alice-key"))
    assert r.status_code == 200 and image_size(r.content) == image_size(photo)
    assert r.headers["content-disposition"] == f'attachment; filename="japandi-{job_id}.jpg"'


def test_limits_index_styles_and_page(stack):
    limits = httpx.get(f"{stack.url}/v1/limits").json()
    s = stack.settings
    assert limits["api_key_required"] is True
    assert (limits["max_upload_bytes"], limits["max_pixels"]) == (s.max_upload_bytes, s.max_pixels)
    assert limits["accepted_types"] == ["image/jpeg", "image/png", "image/webp"]
    assert limits["steps"]["max"] == MAX_STEPS and limits["steps"]["default"]["fast"] < MAX_STEPS
    assert (limits["speeds"], limits["modes"], limits["room_types"]) == (list(SPEEDS), list(MODES), ROOM_TYPES)
    styles = httpx.get(f"{stack.url}/v1/styles").json()
    assert [st["name"] for st in styles] == list(STYLES)
    assert all(len(st["palette"]) >= 3 and all(c.startswith("#") for c in st["palette"]) for st in styles)
    assert httpx.get(f"{stack.url}/v1").json()["styles"] == styles
    page = httpx.get(f"{stack.url}/")
    assert page.headers["content-type"].startswith("text/html") and 'type="module"' in page.text
    assert httpx.get(f"{stack.url}/studio/studio.css").status_code == 200


def test_queue_position_while_queued(make_settings, start_api, photo):
    api = start_api(make_settings())  # no worker: everything waits
    jobs = [submit(api.url, photo).json()["job_id"] for _ in range(3)]
    assert [httpx.get(f"{api.url}/v1/jobs/{j}").json()["queue_position"] for j in jobs] == [1, 2, 3]
    assert httpx.delete(f"{api.url}/v1/jobs/{jobs[0]}").json()["queue_position"] is None  # canceled: not waiting
