"""No way in from a web page, tried in Chromium against a real `nncards serve` (no token: loopback's default).

A page of another origin (http://attacker.test, served by the browser's request interception)
and a page reached through a name that resolves to 127.0.0.1 (DNS rebinding, made with
Chromium's `--host-resolver-rules`) try every way a page has to start a run or read one:
JSON, text/plain, form, multipart, no Content-Type, sendBeacon, DELETE, reads, and a frame.
None gets through: no run is created and nothing is read.
"""

import json

import pytest
from conftest import chromium

from graphs import bn_graph

REBIND = "rebind.test"
RUN = json.dumps({"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0]]}}]})

# Every attempt reports what the page could see: an answer's status and body, or the error.
ATTACKS = """async ([api, run]) => {
  const seen = {};
  const attempt = async (name, action) => {
    try { seen[name] = await action(); } catch (error) { seen[name] = 'refused: ' + error.name; }
  };
  const read = async (response) => response.type === 'opaque' ? 'opaque' : response.status + ' ' + await response.text();
  await attempt('json', async () => read(await fetch(api + '/runs', {method: 'POST', body: run,
      headers: {'Content-Type': 'application/json'}})));
  await attempt('text_plain', async () => read(await fetch(api + '/runs', {method: 'POST', body: run, mode: 'no-cors',
      headers: {'Content-Type': 'text/plain'}})));
  await attempt('no_content_type', async () => read(await fetch(api + '/runs', {method: 'POST', mode: 'no-cors',
      body: new Blob([run])})));
  await attempt('multipart', async () => { const form = new FormData(); form.append('graph', run);
      return read(await fetch(api + '/runs', {method: 'POST', body: form, mode: 'no-cors'})); });
  await attempt('urlencoded', async () => read(await fetch(api + '/runs', {method: 'POST', mode: 'no-cors',
      body: new URLSearchParams({graph: run})})));
  await attempt('beacon', async () => navigator.sendBeacon(api + '/runs', new Blob([run], {type: 'text/plain'})));
  await attempt('delete', async () => read(await fetch(api + '/runs/x', {method: 'DELETE'})));
  await attempt('read_runs', async () => read(await fetch(api + '/runs')));
  await attempt('read_cards', async () => read(await fetch(api + '/cards')));
  await new Promise((done) => {  // a plain HTML form, as a CSRF page would post it
    const frame = document.createElement('iframe'); frame.name = 'sink'; document.body.append(frame);
    const form = document.createElement('form'); form.method = 'POST'; form.action = api + '/runs';
    form.target = 'sink'; form.enctype = 'text/plain';
    const field = document.createElement('input'); field.name = run.slice(0, -1) + ', "x": "'; field.value = '"}';
    form.append(field); document.body.append(form); frame.onload = done; form.submit();
    setTimeout(done, 3000);
  });
  return seen;
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium(f"--host-resolver-rules=MAP {REBIND} 127.0.0.1") as browser:
        yield browser


def run_count(server) -> int:
    return server.client.get("/runs").json()["total"]


def refused(seen: dict) -> None:
    """Nothing the page did got through: a network refusal, an opaque answer, or a 403 envelope."""
    for name, outcome in seen.items():
        if name == "beacon":
            continue  # sendBeacon only says whether it queued the request; the server's answer is checked below
        assert outcome.startswith(("refused:", "opaque", "403 ")), (name, outcome)
        assert "run_id" not in outcome and "layer_BatchNormalization" not in outcome, (name, outcome)


def test_a_page_of_another_origin_can_neither_start_nor_read_a_run(browser, live_server):
    before = run_count(live_server)
    context = browser.new_context()
    page = context.new_page()
    page.route("http://attacker.test/**", lambda route: route.fulfill(
        content_type="text/html", body=f'<html><body><iframe id="editor" src="{live_server.url}/"></iframe></body></html>'))
    page.goto("http://attacker.test/")
    seen = page.evaluate(ATTACKS, [live_server.api, RUN])
    refused(seen)
    framed = next(frame for frame in page.frames if frame is not page.main_frame and frame.name != "sink")
    assert not framed.url.startswith(live_server.url) or framed.evaluate("document.body.innerHTML") == ""
    context.close()
    assert run_count(live_server) == before  # the posts whose answers the page could not see were refused too


def test_a_page_reached_through_a_rebound_name_can_neither_start_nor_read_a_run(browser, live_server):
    before = run_count(live_server)
    context = browser.new_context()
    page = context.new_page()
    rebound = f"http://{REBIND}:{live_server.port}"
    landing = page.goto(rebound + "/")
    assert landing.status == 403  # not even the editor page is answered for that name
    seen = page.evaluate(ATTACKS, [rebound + "/api/v1", RUN])  # same origin now: no CORS in the way
    refused(seen)
    for name in ("json", "read_runs", "read_cards", "delete"):
        assert seen[name].startswith("403 ") and '"forbidden"' in seen[name], (name, seen[name])
    context.close()
    assert run_count(live_server) == before
