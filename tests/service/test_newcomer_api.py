"""Newcomer mistakes at the API: an admin route without a key says how to authenticate; the docs
pages load with no CDN reachable."""
import httpx


def test_admin_route_without_a_key_is_401(start_api, make_settings):
    api = start_api(make_settings(admin_api_key="admin-secret", api_keys="user-key"))
    r = httpx.get(f"{api.url}/v1/admin/stats")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "WWW-Authenticate" in r.headers
    assert httpx.get(f"{api.url}/v1/admin/stats", headers={"Authorization": "Bearer user-key"}).status_code == 403


def test_docs_are_served_without_a_cdn(start_api, make_settings):
    api = start_api(make_settings())
    for page, asset in (("/docs", "/static/docs/swagger-ui-bundle.js"), ("/redoc", "/static/docs/redoc.standalone.js")):
        html = httpx.get(api.url + page).text
        assert asset in html and "cdn." not in html and "unpkg" not in html
        assert httpx.get(api.url + asset).status_code == 200
