"""A browser key used from web pages, in headless Debian Chromium through Playwright.

Run by tests/e2e/cors.rs against a real gateway it started; env: GATEWAY (base URL), KEY (a
key whose allowed_origins list the first page's origin only), ALLOWED_PORT and
REFUSED_PORT (loopback ports this script serves a page on: the group lists both origins,
the key only the first). Each page calls the gateway with `fetch` (POST
/v1/chat/completions with Authorization: a CORS preflight first). The allowed origin reads
the answer; the refused one's fetch fails (the gateway answers 403 origin_not_allowed
without CORS headers). Prints "all cors checks passed" at the end.
"""

import http.server
import json
import os
import sys
import threading

from playwright.sync_api import sync_playwright

GATEWAY = os.environ["GATEWAY"]
KEY = os.environ["KEY"]
ALLOWED_PORT = int(os.environ["ALLOWED_PORT"])
REFUSED_PORT = int(os.environ["REFUSED_PORT"])
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--disable-dev-shm-usage",
]
PAGE = b"<!doctype html><html><head><title>app</title></head><body>app</body></html>"


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def serve(port):
    s = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


CALL = """async ([url, key]) => {
  try {
    const r = await fetch(url + "/v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                "x-stainless-os": "Linux"},
      body: JSON.stringify({model: "gpt-4o-mini", max_tokens: 8,
                            messages: [{role: "user", content: "hi from a page"}]}),
    });
    return {ok: true, status: r.status, body: await r.text(),
            request_id: r.headers.get("x-request-id"),
            target: r.headers.get("x-tollgate-target")};
  } catch (e) {
    return {ok: false, error: String(e)};
  }
}"""


def main():
    servers = [serve(ALLOWED_PORT), serve(REFUSED_PORT)]
    failures = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page()

        page.goto(f"http://127.0.0.1:{ALLOWED_PORT}/", timeout=15000)
        got = page.evaluate(CALL, [GATEWAY, KEY])
        if not got.get("ok") or got.get("status") != 200:
            failures.append(f"allowed origin: {got}")
        else:
            answer = json.loads(got["body"])
            if not answer.get("choices"):
                failures.append(f"allowed origin: no choices in {got['body']}")
            # Exposed headers are readable from the page.
            if not got.get("request_id") or not got.get("target"):
                failures.append(f"allowed origin: exposed headers not readable: {got}")

        page.goto(f"http://127.0.0.1:{REFUSED_PORT}/", timeout=15000)
        got = page.evaluate(CALL, [GATEWAY, KEY])
        if got.get("ok"):
            failures.append(f"refused origin: the page read an answer: {got}")

        browser.close()
    for s in servers:
        s.shutdown()
    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print("all cors checks passed")


if __name__ == "__main__":
    main()
