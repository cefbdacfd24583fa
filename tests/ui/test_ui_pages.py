"""The web UI over real HTTP against a live service: the login form and its cookie, owner scoping,
CSRF on kill/retry/logout, error pages, ETags, artifacts, and that nothing comes from elsewhere."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from hposteer.client.http import ApiClient
from hposteer.service.operations.auth import create_token
from hposteer.service.store import tokens as token_store
from tests.conftest import LiveService
from tests.support.web_ui import PilotThread, csrf_of, login, new_site, submit, wait_for


@pytest.fixture(scope="module")
def alice(live_service: LiveService) -> Iterator[httpx.Client]:
    with login(live_service, live_service.user_token) as client:
        yield client


def test_pages_need_a_session_and_the_login_form_sets_a_strict_cookie(live_service: LiveService) -> None:
    with httpx.Client(base_url=live_service.url) as anon:
        r = anon.get("/ui/tasks/1?page=2")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=%2Fui%2Ftasks%2F1%3Fpage%3D2")
        assert anon.get("/").headers["location"] == "/ui/tasks"
        r = anon.get("/ui/api/tasks/1/history")
        assert r.status_code == 401 and r.json()["error"]["code"] == "login_required"
        page = anon.get("/ui/login?next=//evil.example/x")
        assert 'name="next" value="/ui/tasks"' in page.text  # never a redirect elsewhere
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None
        form = {"token": live_service.user_token, "nonce": nonce.group(1), "next": "/ui/tasks/5"}
        refused = anon.post("/ui/login", data={**form, "nonce": "forged"})
        assert refused.status_code == 403 and "login form expired" in refused.text
        wrong = anon.post("/ui/login", data={**form, "token": "hps_nope"})
        assert wrong.status_code == 401 and "unknown, expired or revoked" in wrong.text
        pilot = anon.post("/ui/login", data={**form, "token": live_service.pilot_token, "nonce": _nonce(anon)})
        assert pilot.status_code == 403 and "pilot token cannot log in" in pilot.text
        ok = anon.post("/ui/login", data={**form, "nonce": _nonce(anon)})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/tasks/5"
        cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and "hposteer_session=" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert anon.get("/ui/tasks").status_code == 200


def _nonce(client: httpx.Client) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', client.get("/ui/login").text)
    assert found is not None
    return found.group(1)


def test_a_user_sees_only_their_tasks_and_an_admin_sees_all_without_buttons(
    live_service: LiveService, alice: httpx.Client
) -> None:
    task_id = submit(live_service, new_site())
    assert f'data-task="{task_id}"' in alice.get("/ui/tasks").text
    page = alice.get(f"/ui/tasks/{task_id}")
    assert page.status_code == 200 and 'id="kill"' in page.text
    bob_token = live_service.token("user", "bob-ui")
    with login(live_service, bob_token) as bob:
        assert f'data-task="{task_id}"' not in bob.get("/ui/tasks").text
        for path in (f"/ui/tasks/{task_id}", f"/ui/tasks/{task_id}/points/1", f"/ui/tasks/{task_id}/live"):
            r = bob.get(path)
            assert r.status_code == 404 and "does not exist (or belongs to another user)" in r.text
        r = bob.get(f"/ui/api/tasks/{task_id}/points")
        assert r.status_code == 404 and r.json()["error"]["code"] == "task_not_found"
        r = bob.post(f"/ui/tasks/{task_id}/kill", data={"csrf": csrf_of(bob.get("/ui/tasks").text)})
        assert r.status_code == 404
    with login(live_service, live_service.admin_token) as admin:
        listing = admin.get("/ui/tasks").text
        assert f'data-task="{task_id}"' in listing and "<th>Owner</th>" in listing
        page = admin.get(f"/ui/tasks/{task_id}")
        assert 'id="kill"' not in page.text and "only the owner acts on it" in page.text
        r = admin.post(f"/ui/tasks/{task_id}/kill", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 403 and "only the task&#39;s owner" in r.text
    assert alice.get(f"/ui/api/tasks/{task_id}/history").json()["total"] >= 0


def test_kill_and_retry_need_the_csrf_token_and_call_the_use_cases(
    live_service: LiveService, alice: httpx.Client
) -> None:
    site = new_site()
    task_id = submit(live_service, site, max_points=4, n_points_per_iteration=4)
    pilot = PilotThread(live_service, site, outcome=lambda job: None)  # every attempt fails: max_attempts=1
    try:
        for _ in range(4):
            assert pilot.run_one()
    finally:
        pilot.stop()
    with ApiClient(live_service.url, live_service.user_token) as api:
        wait_for(lambda: api.get_task(task_id)["state"] == "failed", what="the task to end failed (every point failed)")
    page = alice.get(f"/ui/tasks/{task_id}").text
    assert 'id="retry"' in page and 'id="kill"' not in page
    assert alice.post(f"/ui/tasks/{task_id}/retry", data={"csrf": "forged"}).status_code == 403
    other_site = alice.post(
        f"/ui/tasks/{task_id}/retry", data={"csrf": csrf_of(page)}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403 and "another site" in other_site.text
    r = alice.post(f"/ui/tasks/{task_id}/retry", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/tasks/{task_id}?notice=retried&n=4"
    assert "4 failed points re-queued" in alice.get(r.headers["location"]).text
    again = alice.post(f"/ui/tasks/{task_id}/retry", data={"csrf": csrf_of(page)})
    assert again.headers["location"].endswith("notice=nothing_to_retry")
    r = alice.post(f"/ui/tasks/{task_id}/kill", data={"csrf": csrf_of(page)})
    assert r.headers["location"] == f"/ui/tasks/{task_id}?notice=killed"
    with ApiClient(live_service.url, live_service.user_token) as api:
        assert api.get_task(task_id)["state"] == "killed"
    ended = alice.post(f"/ui/tasks/{task_id}/kill", data={"csrf": csrf_of(page)})
    assert ended.headers["location"].endswith("notice=task_ended")
    assert "had already ended" in alice.get(ended.headers["location"]).text


def test_json_answers_carry_etags_and_change_with_the_task(live_service: LiveService, alice: httpx.Client) -> None:
    site = new_site()
    task_id = submit(live_service, site)
    pilot = PilotThread(live_service, site)
    try:
        assert pilot.run_one()
        for path in ("history", "points?sort=loss", "parcoords", "importance", "steering"):
            url = f"/ui/api/tasks/{task_id}/{path}"
            first = alice.get(url)
            assert first.status_code == 200 and first.headers["content-type"] == "application/json"
            assert alice.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        etag = alice.get(f"/ui/api/tasks/{task_id}/history").headers["etag"]
        live = alice.get(f"/ui/tasks/{task_id}/live")
        assert (
            alice.get(f"/ui/tasks/{task_id}/live", headers={"If-None-Match": live.headers["etag"]}).status_code == 304
        )
        assert pilot.run_one()
        after = alice.get(f"/ui/api/tasks/{task_id}/history", headers={"If-None-Match": etag})
        assert after.status_code == 200 and len(after.json()["points"]) == 2
    finally:
        pilot.stop()
    bad = alice.get(f"/ui/api/tasks/{task_id}/points?sort=params")
    assert bad.status_code == 422 and "cannot sort points by 'params'" in bad.json()["error"]["message"]


def test_error_pages_are_html_and_say_what_went_wrong(alice: httpx.Client) -> None:
    for path, status, words in [
        ("/ui/tasks/99999", 404, "task 99999 does not exist"),
        ("/ui/tasks/abc", 422, "the address is not valid"),
        ("/ui/no-such-page", 404, "there is no page /ui/no-such-page"),
        ("/ui/tasks?state=lost", 422, "unknown task state"),
    ]:
        r = alice.get(path)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), path
        assert words in r.text and "Back to the task list" in r.text


def test_point_page_shows_attempts_and_serves_the_checkpoint(live_service: LiveService, alice: httpx.Client) -> None:
    site = new_site()
    task_id = submit(live_service, site, checkpoint_to_save=["ckpt"], max_attempts=2, max_points=2)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("ckpt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"state"))
    blob = data.getvalue()
    with ApiClient(live_service.url, live_service.pilot_token) as pilot_api:
        pilot_id = pilot_api.register_pilot({"name": "ckpt-wn", "site": site, "slots": [{"name": "0", "gpus": []}]})[
            "pilot_id"
        ]
        wait_for(lambda: bool(pilot_api.acquire(pilot_id, "0", request_key="first-claim-0001")["job"]), what="a job")
        job = pilot_api.acquire(pilot_id, "0", request_key="first-claim-0001")["job"]
        assert job is not None
        upload = pilot_api.request(
            "PUT",
            job["checkpoint"]["upload_url"],
            content=blob,
            headers={"X-Lease-Token": job["lease_token"], "X-Content-SHA256": hashlib.sha256(blob).hexdigest()},
        )
        assert upload.status_code == 201
        report = {"lease_token": job["lease_token"], "outcome": "failure", "failure_class": "timeout", "exit_code": 137,
                  "message": "too slow", "log_tail": "step 1\nstep 2\nkilled\n", "duration_s": 3.0}  # fmt: skip
        pilot_api.complete(job["attempt_id"], report)
    page = alice.get(f"/ui/tasks/{task_id}/points/{job['point_id']}")
    assert page.status_code == 200
    html = page.text
    assert 'id="timeline"' in html and "attempt 1: failed (timeout) on ckpt-wn" in html
    assert "step 2" in html and "too slow" in html and ">137<" in html
    link = re.search(rf'href="(/ui/tasks/{task_id}/artifacts/\d+)"', html)
    assert link is not None and f"{task_id}_{job['point_id']}.checkpoint.tar.gz" in html
    assert alice.get(link.group(1)).content == blob


def test_nothing_is_loaded_from_elsewhere(live_service: LiveService, alice: httpx.Client) -> None:
    task_id = submit(live_service, new_site())
    pages = [f"/ui/tasks/{task_id}", f"/ui/tasks/{task_id}/live", "/ui/tasks", "/ui/pilots", "/ui/login"]
    assets: set[str] = set()
    for path in pages:
        r = alice.get(path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
        assert not re.search(r"https?://", r.text), f"{path} names an outside URL"
        assert "<script>" not in r.text and " style=" not in r.text  # the CSP allows neither
        for ref in re.findall(r'(?:src|href)="([^"]*)"', r.text):
            assert ref.startswith(("/", "#", "?")), f"{path}: {ref}"
            if ref.startswith("/ui/static/"):
                assets.add(ref)
    assert len(assets) >= 6
    for ref in assets:
        asset = alice.get(ref)
        assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
        # An XML namespace is a name, not something fetched: the only URL-like text allowed.
        assert not re.search(rb"https?://", asset.content.replace(b"http://www.w3.org/2000/svg", b"")), ref


def test_logout_and_a_revoked_token_end_the_session(live_service: LiveService) -> None:
    token_id, token = create_token(live_service.services.db, role="user", owner="carol")
    with login(live_service, token) as carol:
        page = carol.get("/ui/tasks")
        out = carol.post("/ui/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and 'hposteer_session=""' in out.headers["set-cookie"]
        assert carol.get("/ui/tasks").status_code == 303
    with login(live_service, token) as carol:
        with live_service.services.db.write() as conn:
            token_store.revoke_token(conn, token_id)
        r = carol.get("/ui/tasks")
        assert r.status_code == 303 and "session+ended" in r.headers["location"].replace("%20", "+")
