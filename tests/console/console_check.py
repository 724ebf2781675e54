"""Drives the web console (/console/) in headless Debian Chromium through Playwright.

Run by tests/e2e/console.rs against a real gateway it started and seeded; env: ADMIN and
GATEWAY (base URLs), ROOT and VIEWER (admin tokens), KEY_B (an API key of grp_b), SHOTS
(where the screenshots go). Every wait has a deadline (Playwright's auto-wait); nothing
sleeps for a fixed time. Prints "all console checks passed" at the end.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

ADMIN = os.environ["ADMIN"]
GATEWAY = os.environ["GATEWAY"]
ROOT = os.environ["ROOT"]
VIEWER = os.environ["VIEWER"]
DEVELOPER = os.environ["DEVELOPER"]
KEY_B = os.environ["KEY_B"]
SHOTS = os.environ["SHOTS"]
XSS = "<img src=x onerror=alert(1)>"

# Loopback only: never through a proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--disable-dev-shm-usage",
]


def call(url, token, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with HTTP.open(req, timeout=15) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def api(path, token=ROOT, method="GET", body=None):
    return call(ADMIN + path, token, method, body)


def chat(key, model="gpt-4o-mini"):
    """One request on the data plane; (status, error code or None)."""
    status, body = call(GATEWAY + "/v1/chat/completions", key, "POST", {
        "model": model, "messages": [{"role": "user", "content": "hi"}]})
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return status, code


def money(text):
    return float(re.sub(r"[^0-9.]", "", text))


def integer(text):
    return int(re.sub(r"[^0-9]", "", text))


def shot(page, name):
    # The last action's notice would cover part of the page.
    page.evaluate("document.getElementById('toast').className = 'toast'")
    expect(page.locator("#toast")).to_have_css("opacity", "0")
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def goto(page, name):
    page.evaluate("p => { location.hash = p }", name)
    expect(page.locator(f'#page[data-ready="{name}"]')).to_be_visible()


def sign_in(page, token):
    page.goto(ADMIN + "/console/")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#top")).to_be_visible()
    expect(page.locator("#page[data-ready]")).to_be_attached()


def confirm_dialog(page, label):
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=label, exact=True).click()
    expect(page.locator("dialog[open]")).to_have_count(0)


def main():
    expect.set_options(timeout=15_000)
    violations, alerts = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))

        # The pages carry the strict CSP and the framing / sniffing / referrer headers.
        resp = page.goto(ADMIN + "/console/")
        h = resp.headers
        csp = h.get("content-security-policy", "")
        for part in ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"]:
            assert part in csp, csp
        assert "unsafe-inline" not in csp, csp
        assert h.get("x-frame-options") == "DENY", h
        assert h.get("x-content-type-options") == "nosniff", h
        assert h.get("referrer-policy") == "no-referrer", h
        expect(page.get_by_label("Admin token")).to_be_visible()
        shot(page, "signin")

        # A wrong token is refused and not kept.
        page.get_by_label("Admin token").fill("tga-not-a-real-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("401")
        assert page.evaluate("sessionStorage.length") == 0

        # Sign in: the token lives in session storage only, never in the URL.
        sign_in(page, ROOT)
        assert page.evaluate("sessionStorage.getItem('tollgate.admin_token')") == ROOT
        assert page.evaluate("localStorage.length") == 0
        assert ROOT not in page.url
        for name in ["Overview", "Groups", "Keys", "Spend", "Invoices", "Audit", "Drift", "Policy"]:
            expect(page.locator("#nav").get_by_role("link", name=name)).to_be_visible()

        # Overview: the chart is drawn and its total, the requests and spend of grp_prod
        # are the API's.
        goto(page, "overview")
        _, total = api("/v1/spend/groups/grp_prod")
        _, group = api("/v1/groups/grp_prod")
        expect(page.locator(".chart canvas").first).to_be_attached()
        row = page.locator('table[data-table="overview-groups"] tr[data-group="grp_prod"]')
        assert integer(row.locator('td[data-col="requests"]').inner_text()) == total["requests"], total
        assert abs(money(row.locator('td[data-col="spend"]').inner_text()) - group["spend_usd"]) < 1e-6, group
        assert integer(row.locator('td[data-col="refusals"]').inner_text()) == group["refusals"]["total"] >= 1, group
        chart_total = money(page.locator('li[data-series="grp_prod"] [data-total]').inner_text())
        assert abs(chart_total - total["cost_usd"]) < 1e-6, (chart_total, total)
        assert total["cost_usd"] > 0 and total["requests"] >= 3, total
        shot(page, "overview")

        # A page still loading when another is chosen never draws into that one: the keys
        # list is held at the network until the Groups page is shown, then let through.
        keys_list = re.compile(r"/v1/keys(\?|$)")
        held = []
        page.route(keys_list, lambda route: held.append(route))
        with page.expect_request(keys_list):
            page.evaluate("p => { location.hash = p }", "keys")
        goto(page, "groups")
        with page.expect_response(keys_list) as late:
            held[0].continue_()
        late.value.finished()
        page.unroute(keys_list)
        # Two frames: the late answer's JSON is read and its draw has run.
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        expect(page.locator("#page h1")).to_have_text(["Groups"])
        expect(page.locator("#page table[data-table=keys]")).to_have_count(0)

        # Create a key named with an XSS probe, tagged with one: the raw key is shown once.
        goto(page, "keys")
        page.locator('[data-action="create"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("Name").fill(XSS)
        dlg.get_by_label("Group").select_option("grp_prod")
        dlg.get_by_label("Tags").fill(f"probe={XSS}")
        dlg.get_by_role("button", name="Create", exact=True).click()
        secret_box = page.locator("dialog[open] input[data-secret]")
        expect(secret_box).to_have_value(re.compile(r"^tg-"))
        raw = secret_box.input_value()
        page.locator("dialog[open]").get_by_role("button", name="Copy").click()
        expect(page.locator("dialog[open]")).to_contain_text("Copied.")
        shot(page, "key-created")
        page.locator("dialog[open]").get_by_role("button", name="Done").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        assert chat(raw) == (200, None), chat(raw)

        # Reload: the secret is nowhere in the page; the probe shows as text, runs nothing.
        page.reload()
        goto(page, "keys")
        assert raw not in page.content()
        assert raw[:12] not in page.evaluate("document.body.innerText")
        row = page.locator("table[data-table=keys] tbody tr[data-key]").filter(has_text=XSS)
        expect(row).to_have_count(1)
        expect(row.locator('td[data-col="tags"]')).to_have_text(f"probe={XSS}")
        assert page.locator("img").count() == 0
        assert alerts == [], alerts
        # Limits and models in one compact column; the other list fields behind Details.
        brow_b = page.locator("table[data-table=keys] tbody tr[data-key]").filter(has_text="team b service")
        expect(brow_b.locator('[data-field="limits"]')).to_have_text("60 rpm · 2 parallel")
        expect(brow_b.locator('[data-field="models"]')).to_have_text("gpt-4o-mini, gpt-4o")
        shot(page, "keys")

        # Disable and enable it from the table.
        key_id = row.get_attribute("data-key")
        krow = page.locator(f'tr[data-key="{key_id}"]')
        krow.locator('[data-action="disable"]').click()
        expect(krow.locator(".badge")).to_have_text("disabled")
        assert chat(raw) == (403, "key_disabled"), chat(raw)
        krow.locator('[data-action="enable"]').click()
        expect(krow.locator(".badge")).to_have_text("active")
        assert chat(raw) == (200, None), chat(raw)

        # Regenerate with a grace period: a new secret, shown once; the old one still works.
        krow.locator('[data-action="regenerate"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("Grace period").fill("1h")
        dlg.get_by_role("button", name="Regenerate", exact=True).click()
        expect(secret_box).to_have_value(re.compile(r"^tg-"))
        new_raw = secret_box.input_value()
        assert new_raw != raw
        page.locator("dialog[open]").get_by_role("button", name="Done").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        assert chat(new_raw) == (200, None) and chat(raw) == (200, None)
        assert new_raw not in page.content()

        # Revoke it from the table: the data plane answers 403 key_revoked.
        krow.locator('[data-action="revoke"]').click()
        confirm_dialog(page, "Revoke")
        expect(krow.locator(".badge")).to_have_text("revoked")
        assert chat(raw) == (403, "key_revoked"), chat(raw)
        assert chat(new_raw) == (403, "key_revoked"), chat(new_raw)

        # Batch create: the raw keys come as a CSV download, and work.
        page.locator('[data-action="batch"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("How many").fill("3")
        dlg.get_by_label("Group").select_option("grp_b")
        dlg.get_by_label("Name prefix").fill("hack")
        dlg.get_by_role("button", name="Create", exact=True).click()
        with page.expect_download() as dl:
            page.locator('dialog[open] [data-action="download-csv"]').click()
        lines = open(dl.value.path()).read().strip().split("\n")
        assert lines[0] == "id,name,prefix,key" and len(lines) == 4, lines
        batch = [[c.strip('"') for c in line.split(",")] for line in lines[1:]]
        assert all(chat(b[3]) == (200, None) for b in batch)
        page.locator("dialog[open]").get_by_role("button", name="Done").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        assert all(b[3] not in page.content() for b in batch)
        # The list is redrawn with them before the filters are touched.
        expect(page.locator("table[data-table=keys] tbody tr[data-key]").filter(has_text="hack")).to_have_count(3)

        # Filters: search and status; with a group chosen, its bulk actions.
        page.get_by_label("Search").fill("hack")
        page.get_by_label("Group", exact=True).select_option("grp_b")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("table[data-table=keys] tbody tr[data-key]")).to_have_count(3)
        page.locator('[data-bulk="disable"]').click()
        confirm_dialog(page, "Disable all")
        expect(page.locator("table[data-table=keys] tbody .badge")).to_have_text(["disabled"] * 3)
        assert chat(batch[0][3]) == (403, "key_disabled")
        page.locator('[data-bulk="enable"]').click()
        confirm_dialog(page, "Enable all")
        expect(page.locator("table[data-table=keys] tbody .badge")).to_have_text(["active"] * 3)
        # Edit all keys of grp_b (PATCH /v1/groups/grp_b/keys): lifetime and rpm reach
        # every API key of the group; a looser rpm than the group's is listed as skipped.
        page.locator('[data-bulk="edit"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("New lifetime from now (ttl)").fill("90d")
        dlg.get_by_label("Requests per minute").fill("45")
        dlg.get_by_role("button", name="Apply to all").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        _, listed = api("/v1/keys?group=grp_b&limit=100")
        live = [k for k in listed["data"] if k["status"] == "active"]
        assert live and all(k["limits"]["rpm"] == 45 and k["expires_at"] for k in live), listed
        page.locator('[data-bulk="edit"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("Models").fill("gpt-4o-mini, gpt-4o")
        shot(page, "keys-edit-all")
        dlg.get_by_role("button", name="Cancel").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        page.get_by_label("Search").fill("")
        page.get_by_label("Group", exact=True).select_option("")
        page.get_by_label("Status").select_option("revoked")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("table[data-table=keys] tbody tr[data-key]")).to_have_count(1)
        expect(page.locator("table[data-table=keys] tbody tr[data-key]")).to_contain_text(XSS)
        page.get_by_label("Status").select_option("")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("table[data-table=keys] tbody tr[data-key]")).to_have_count(6)

        # Edit and move a batch key.
        bid = batch[0][0]
        brow = page.locator(f'tr[data-key="{bid}"]')
        brow.locator('[data-action="edit"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("Name").fill("renamed in the console")
        dlg.get_by_label("Requests per minute").fill("30")
        dlg.get_by_role("button", name="Save").click()
        expect(brow).to_contain_text("renamed in the console")
        _, k = api(f"/v1/keys/{bid}")
        assert k["name"] == "renamed in the console" and k["limits"]["rpm"] == 30, k
        brow.locator('[data-action="move"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("To group").select_option("grp_prod")
        dlg.get_by_role("button", name="Move", exact=True).click()
        expect(brow).to_contain_text("grp_prod")
        assert api(f"/v1/keys/{bid}")[1]["group"] == "grp_prod"

        # The edit dialog covers every PATCH field: models, a limit and allowed_cidrs
        # set there reach the API and the data plane.
        bkey = batch[0][3]
        assert chat(bkey, "gpt-4o") == (200, None)
        brow.locator('[data-action="edit"]').click()
        dlg = page.locator("dialog[open]")
        expect(dlg.get_by_label("Requests per minute (rpm)")).to_have_value("30")
        dlg.get_by_label("Models", exact=True).fill("gpt-4o-mini")
        dlg.get_by_label("Tokens per minute (tpm)").fill("5000")
        dlg.get_by_label("Allowed CIDRs").fill("10.0.0.0/8, 192.168.0.0/16")
        dlg.get_by_role("button", name="Save").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        expect(brow.locator('[data-field="limits"]')).to_have_text("30 rpm · 5,000 tpm")
        expect(brow.locator('[data-field="models"]')).to_have_text("gpt-4o-mini")
        _, k = api(f"/v1/keys/{bid}")
        assert k["models"] == ["gpt-4o-mini"], k
        assert k["limits"]["tpm"] == 5000 and k["limits"]["rpm"] == 30, k
        assert k["allowed_cidrs"] == ["10.0.0.0/8", "192.168.0.0/16"], k
        assert chat(bkey) == (403, "ip_not_allowed"), chat(bkey)
        # Its details row: the list fields the columns leave out.
        brow.locator('[data-action="details"]').click()
        detail = page.locator(f'tr[data-detail="{bid}"]')
        expect(detail).to_be_visible()
        expect(detail.locator('[data-field="created_by"]')).to_have_text(k["created_by"])
        expect(detail.locator('[data-field="org"]')).to_have_text("acme")
        expect(detail.locator('[data-field="allowed_cidrs"]')).to_have_text("10.0.0.0/8, 192.168.0.0/16")

        # A limit looser than the group's: the API's 400 message, next to that field;
        # nothing changed. Emptying allowed_cidrs (a JSON null) in the same save.
        s, refused = api(f"/v1/keys/{bid}", method="PATCH", body={"max_tokens": 5000})
        assert s == 400 and refused["error"]["param"] == "max_tokens", refused
        brow.locator('[data-action="edit"]').click()
        dlg = page.locator("dialog[open]")
        expect(dlg.get_by_label("Allowed CIDRs")).to_have_value("10.0.0.0/8, 192.168.0.0/16")
        dlg.get_by_label("Allowed CIDRs").fill("")
        max_tokens = dlg.get_by_label("Max tokens per request (max_tokens)")
        max_tokens.fill("5000")
        dlg.get_by_role("button", name="Save").click()
        expect(dlg.locator('[data-error-for="max_tokens"]')).to_have_text(refused["error"]["message"])
        expect(max_tokens).to_have_attribute("aria-invalid", "true")
        assert api(f"/v1/keys/{bid}")[1]["allowed_cidrs"] == ["10.0.0.0/8", "192.168.0.0/16"]
        # The mTLS fields: sent only when changed; without tls.client_ca the API refuses
        # them, and its message lands next to the field.
        fp = "ab" * 32
        certs = dlg.get_by_label("Client certificate SHA-256")
        certs.fill(fp)
        dlg.get_by_role("button", name="Save").click()
        expect(dlg.locator('[data-error-for="max_tokens"]')).to_have_text(refused["error"]["message"])
        max_tokens.fill("")
        dlg.get_by_role("button", name="Save").click()
        expect(dlg.locator('[data-error-for="client_cert_sha256"]')).to_contain_text("needs server.tls.client_ca")
        certs.fill("")
        dlg.get_by_label("Require a client certificate").check()
        dlg.get_by_role("button", name="Save").click()
        expect(dlg.locator('[data-error-for="require_client_cert"]')).to_contain_text("needs server.tls.client_ca")
        dlg.get_by_label("Require a client certificate").uncheck()
        max_tokens.fill("5000")
        page.set_viewport_size({"width": 1280, "height": 1900})  # the whole dialog
        shot(page, "key-edit")
        page.set_viewport_size({"width": 1280, "height": 900})
        max_tokens.fill("")
        dlg.get_by_role("button", name="Save").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        _, k = api(f"/v1/keys/{bid}")
        assert k["allowed_cidrs"] is None and "max_tokens" not in k["limits"], k
        assert k["models"] == ["gpt-4o-mini"] and k["limits"]["tpm"] == 5000, k
        assert chat(bkey) == (200, None), chat(bkey)
        assert chat(bkey, "gpt-4o") == (403, "model_not_allowed"), chat(bkey, "gpt-4o")

        # The policy fields of issue 22 through the same dialog: set there, they reach the
        # API and the data plane (a required parameter refuses the console's chat, which
        # names no `user`); emptied, they are cleared.
        brow.locator('[data-action="edit"]').click()
        dlg = page.locator("dialog[open]")
        dlg.get_by_label("Token budget (token_budget)").fill("900000")
        dlg.get_by_label("Token budget period").select_option("daily")
        dlg.get_by_label("Limits per model (JSON object)").fill('{"gpt-4o*": {"rpm": 20}}')
        dlg.get_by_label("Allowed providers").fill("oa")
        dlg.get_by_label("Required parameters").fill("user")
        dlg.get_by_label("Fixed parameters (JSON object)").fill('{"store": false}')
        dlg.get_by_label("Allowed origins").fill("https://app.example.com")
        dlg.get_by_role("button", name="Save").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        _, k = api(f"/v1/keys/{bid}")
        assert k["limits"]["token_budget"] == 900000 and k["limits"]["token_budget_period"] == "daily", k
        assert k["limits"]["model_limits"]["gpt-4o*"]["rpm"] == 20, k
        assert k["allowed_providers"] == ["oa"] and k["required_params"] == ["user"], k
        assert k["fixed_params"] == {"store": False}, k
        assert k["allowed_origins"] == ["https://app.example.com"], k
        assert chat(bkey) == (400, "missing_parameter"), chat(bkey)
        brow.locator('[data-action="edit"]').click()
        dlg = page.locator("dialog[open]")
        expect(dlg.get_by_label("Required parameters")).to_have_value("user")
        dlg.get_by_label("Required parameters").fill("")
        dlg.get_by_label("Allowed origins").fill("")
        dlg.get_by_role("button", name="Save").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        _, k = api(f"/v1/keys/{bid}")
        assert not k.get("required_params") and not k.get("allowed_origins"), k
        assert chat(bkey) == (200, None), chat(bkey)

        # Pause grp_b from the Groups page: its key gets 403 group_paused; resume.
        goto(page, "groups")
        assert chat(KEY_B) == (200, None)
        page.locator('tr[data-group="grp_b"] [data-action="pause"]').click()
        confirm_dialog(page, "Pause")
        expect(page.locator('tr[data-group="grp_b"] td[data-col="state"] .badge')).to_have_text("paused")
        assert chat(KEY_B) == (403, "group_paused"), chat(KEY_B)
        expect(page.locator('tr[data-group="grp_prod"] [data-field="preset"]')).to_have_text("no preset")
        expect(page.locator('tr[data-group="grp_b"] [data-action="keys/edit"]')).to_be_visible()
        shot(page, "groups")
        page.locator('tr[data-group="grp_b"] [data-action="resume"]').click()
        confirm_dialog(page, "Resume")
        expect(page.locator('tr[data-group="grp_b"] td[data-col="state"] .badge')).to_have_text("active")
        assert chat(KEY_B) == (200, None), chat(KEY_B)

        # Bulk: disable every API key of grp_b, then enable them again.
        page.locator('tr[data-group="grp_b"] [data-action="keys/disable"]').click()
        confirm_dialog(page, "Disable all keys")
        expect(page.locator("#toast")).to_contain_text("disable all keys: done")
        assert chat(KEY_B) == (403, "key_disabled"), chat(KEY_B)
        page.locator('tr[data-group="grp_b"] [data-action="keys/enable"]').click()
        confirm_dialog(page, "Enable all keys")
        expect(page.locator("#toast")).to_contain_text("enable all keys: done")
        assert chat(KEY_B) == (200, None), chat(KEY_B)

        # Spend: the page's totals for grp_prod are the API's.
        goto(page, "spend")
        page.get_by_label("Group", exact=True).select_option("grp_prod")
        page.get_by_role("button", name="Show").click()
        expect(page.locator('[data-totals="grp_prod"]')).to_be_visible()
        expect(page.locator('#page[data-ready="spend"]')).to_be_visible()
        _, total = api("/v1/spend/groups/grp_prod")
        t = page.locator('[data-totals="grp_prod"]')
        assert integer(t.locator('[data-field="requests"]').inner_text()) == total["requests"], total
        assert abs(money(t.locator('[data-field="cost_usd"]').inner_text()) - total["cost_usd"]) < 1e-6, total
        expect(page.locator("table[data-table=by-model] tbody")).to_contain_text("gpt-4o-mini")
        with page.expect_download() as dl:
            page.locator('[data-csv="by-model"]').click()
        csv_text = open(dl.value.path()).read()
        assert csv_text.startswith("model,"), csv_text
        shot(page, "spend")

        # Invoices: this month's, with the API's totals and lines; grp_b is billed to
        # customer-b with its 15 % markup; the CSV downloads, all or one invoice.
        goto(page, "invoices")
        _, invs = api("/v1/invoices")
        assert [i["invoice_to"] for i in invs["data"]] == ["customer-b", "grp_prod"], invs
        for inv in invs["data"]:
            sec = page.locator(f'section[data-invoice="{inv["invoice_to"]}"]')
            expect(sec).to_be_visible()
            for f in ["subtotal_usd", "markup_usd", "total_usd"]:
                shown = money(sec.locator(f'[data-field="{f}"]').inner_text())
                assert abs(shown - inv[f]) < 1e-6, (f, shown, inv)
            expect(sec.locator("tbody tr")).to_have_count(len(inv["lines"]))
        b = page.locator('section[data-invoice="customer-b"]')
        expect(b.locator('td[data-col="markup_pct"]').first).to_have_text("15%")
        assert invs["data"][0]["markup_usd"] > 0, invs
        period = invs["period"]
        with page.expect_download() as dl:
            page.locator(f'[data-csv="invoices-{period}"]').click()
        rows = open(dl.value.path()).read().strip().split("\n")
        assert rows[0].startswith("invoice_to,group,model,requests,"), rows
        assert len(rows) == 1 + sum(len(i["lines"]) for i in invs["data"]), rows
        with page.expect_download() as dl:
            page.locator(f'[data-csv="invoice-customer-b-{period}"]').click()
        rows = open(dl.value.path()).read().strip().split("\n")
        assert len(rows) == 1 + len(invs["data"][0]["lines"]), rows
        assert all(r.startswith("customer-b,grp_b,") for r in rows[1:]), rows
        shot(page, "invoices")
        # Another month: nothing billed.
        page.get_by_label("Month (UTC)").fill("2001-01")
        page.get_by_role("button", name="Show").click()
        expect(page.locator('[data-empty="invoices"]')).to_contain_text("2001-01")
        page.get_by_label("Month (UTC)").fill(period)
        page.get_by_role("button", name="Show").click()
        expect(page.locator('section[data-invoice="customer-b"]')).to_be_visible()

        # Audit: the revocation is there; the chain checks out.
        goto(page, "audit")
        expect(page.locator("table[data-table=audit]")).to_contain_text("key.revoked")
        page.locator('[data-action="verify"]').click()
        expect(page.locator(".chain")).to_contain_text("Chain intact")
        shot(page, "audit")

        # Drift: today's reconciled rows, provider tokens next to the gateway's.
        goto(page, "drift")
        rows = page.locator("table[data-table=drift] tbody tr")
        expect(page.locator("table[data-table=drift]")).to_contain_text("gpt-4o-mini-2024-07-18")
        expect(rows).to_have_count(2)
        _, rec = api("/v1/reconciliation")
        first = rec["data"][0]
        cells = rows.first
        assert integer(cells.locator('[data-col="provider_tokens"]').inner_text()) == first["provider_tokens"], first
        assert integer(cells.locator('[data-col="gateway_tokens"]').inner_text()) == first["gateway_tokens"], first
        expect(page.locator("table[data-table=drift-runs]")).to_contain_text("oa:")
        shot(page, "drift")

        # Policy: summary, the file on disk valid, reload bumps the generation.
        goto(page, "policy")
        expect(page.locator('[data-field="file_ok"]')).to_have_text("valid")
        gen = integer(page.locator('[data-field="generation"]').inner_text())
        page.locator('[data-action="reload"]').click()
        confirm_dialog(page, "Reload")
        expect(page.locator('[data-field="generation"]')).to_have_text(str(gen + 1))
        shot(page, "policy")

        # A phone-sized screen.
        phone = ctx.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        sign_in(phone, ROOT)
        goto(phone, "overview")
        shot(phone, "overview-phone")
        # The keys table scrolls inside its frame; the page itself never scrolls sideways.
        goto(phone, "keys")
        expect(phone.locator("table[data-table=keys] tbody tr[data-key]").first).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        shot(phone, "keys-phone")
        phone.close()

        # Sign out forgets the token.
        page.locator("#signout").click()
        expect(page.get_by_label("Admin token")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0

        # A viewer: spend yes, no write buttons, and a forged write is refused.
        viewer_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        v = viewer_ctx.new_page()
        v.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(v, VIEWER)
        expect(v.locator("#who")).to_contain_text("viewer")
        expect(v.locator("#nav").get_by_role("link", name="Spend")).to_be_visible()
        expect(v.locator("#nav").get_by_role("link", name="Invoices")).to_be_visible()
        expect(v.locator("#nav").get_by_role("link", name="Policy")).to_have_count(0)
        goto(v, "keys")
        expect(v.locator("table[data-table=keys] tbody tr[data-key]").first).to_be_visible()
        for action in ["create", "batch", "revoke", "disable", "edit", "regenerate", "move"]:
            assert v.locator(f'[data-action="{action}"]').count() == 0, action
        goto(v, "groups")
        assert v.locator('[data-action="pause"]').count() == 0
        goto(v, "spend")
        expect(v.locator('[data-field="cost_usd"]')).to_be_visible()
        shot(v, "viewer-spend")
        forged = v.evaluate("""async () => {
            const r = await fetch('/v1/keys', {method: 'POST', headers: {
                Authorization: 'Bearer ' + sessionStorage.getItem('tollgate.admin_token'),
                'Content-Type': 'application/json'}, body: JSON.stringify({name: 'forged', group: 'grp_prod'})});
            return [r.status, (await r.json()).error.code];
        }""")
        assert forged == [403, "forbidden"], forged
        viewer_ctx.close()

        # A developer: only the Keys page; mints its own key; no edit or move.
        dev_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        d = dev_ctx.new_page()
        sign_in(d, DEVELOPER)
        expect(d.locator("#nav a")).to_have_text(["Keys"])
        expect(d.locator('#page[data-ready="keys"]')).to_be_visible()
        expect(d.locator("table[data-table=keys] td.empty")).to_be_visible()
        d.locator('[data-action="create"]').click()
        dlg = d.locator("dialog[open]")
        dlg.get_by_label("Name").fill("alice's notebook")
        expect(dlg.get_by_label("Owner")).to_have_value("alice")
        dlg.get_by_role("button", name="Create", exact=True).click()
        dev_key = d.locator("dialog[open] input[data-secret]")
        expect(dev_key).to_have_value(re.compile(r"^tg-"))
        assert chat(dev_key.input_value()) == (200, None)
        d.locator("dialog[open]").get_by_role("button", name="Done").click()
        expect(d.locator("table[data-table=keys] tbody tr[data-key]")).to_have_count(1)
        expect(d.locator("table[data-table=keys] tbody tr[data-key]")).to_contain_text("alice")
        for action in ["edit", "move", "batch"]:
            assert d.locator(f'[data-action="{action}"]').count() == 0, action
        expect(d.locator('[data-action="revoke"]')).to_have_count(1)
        shot(d, "developer-keys")
        dev_ctx.close()

        # Dark mode follows the system.
        dark_ctx = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
        dk = dark_ctx.new_page()
        sign_in(dk, ROOT)
        goto(dk, "overview")
        expect(dk.locator(".chart canvas").first).to_be_attached()
        bg = dk.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(18, 21, 27)", bg
        shot(dk, "overview-dark")
        dark_ctx.close()
        browser.close()

    assert violations == [], violations
    assert alerts == [], alerts
    print("all console checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        import traceback
        traceback.print_exc()
        sys.exit(1)
