"""Staff log in with their token; customers, bad tokens and forged forms are kept out."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import select

from hub.store.tables import api_token
from hub.tokens import ApiTokens
from tests.ops.conftest import Ops, log_in


def test_pages_need_a_login_and_a_customer_token_is_refused(page: Page, ops: Ops) -> None:
    page.goto(ops.url("/ops/dead-letters"))
    assert page.url.startswith(ops.url("/ops/login?next="))
    expect(page.locator("h1")).to_have_text("Staff login")

    page.fill("#token", ops.customer)
    page.click("button:has-text('Log in')")
    expect(page.locator("#login-error")).to_contain_text("customer token")
    assert not [c for c in page.context.cookies() if c["name"] == "hub_ops_session"]

    page.fill("#token", "not-a-token")
    page.click("button:has-text('Log in')")
    expect(page.locator("#login-error")).to_contain_text("not a valid token")

    page.fill("#token", ops.staff)
    page.click("button:has-text('Log in')")
    page.wait_for_url(ops.url("/ops/dead-letters"))  # back where it was going
    expect(page.locator("header .who")).to_have_text("ops-anna")
    session = next(c for c in page.context.cookies() if c["name"] == "hub_ops_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert ops.staff not in session["value"], "the token itself never goes in a cookie"

    page.click("button:has-text('Log out')")
    page.wait_for_url(ops.url("/ops/login"))
    page.goto(ops.url("/ops/"))
    assert page.url.startswith(ops.url("/ops/login"))


def test_a_revoked_token_ends_its_session(page: Page, ops: Ops) -> None:
    log_in(page, ops)
    expect(page.locator("#live")).to_be_visible()
    with ops.stack.runtime.store.begin() as conn:
        token_id = conn.execute(select(api_token.c.id).where(
            api_token.c.subject == "ops-anna")).scalar_one()
        assert ApiTokens.revoke(conn, token_id)
    page.goto(ops.url("/ops/"))
    assert page.url.startswith(ops.url("/ops/login"))


def test_forms_without_the_csrf_token_change_nothing(page: Page, ops: Ops) -> None:
    log_in(page, ops)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=ops.base, cookies=cookies) as http:
        assert http.get("/ops/", follow_redirects=False).status_code == 200
        forged = http.post("/ops/dead-letters/discard", data={"ids": "1", "reason": "x"},
                           follow_redirects=False)
        assert forged.status_code == 403
        foreign = http.post("/ops/dead-letters/replay", data={"ids": "1", "csrf": "x"},
                            headers={"Origin": "https://evil.example"},
                            follow_redirects=False)
        assert foreign.status_code == 403
        login = http.post("/ops/login", data={"token": ops.staff}, follow_redirects=False)
        assert login.status_code == 400 and "hub_ops_session" not in login.cookies
    with httpx.Client(base_url=ops.base) as anonymous:
        assert anonymous.get("/ops/live").status_code == 401
        assert anonymous.get("/ops/").headers["location"].startswith("/ops/login")
