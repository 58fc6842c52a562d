"""Every page a person opens, in a real Chromium with the network cut to loopback.

The hub's pages must work offline and load nothing from outside: the feed API's /docs and
/redoc (a real `iehub serve`), the quality report site (`iehub quality site`) and the data
dictionary (`iehub dictionary`, and its copy in the site). Chromium runs headless with every
host name but loopback resolving to nothing, and the DevTools protocol records every URL each
page asks for; a page passes only when all of them are loopback, file: or data: URLs, no script
threw, and what a reader looks for is on the rendered page (operation names, per-district counts
equal to ops.batches, table names). A screenshot of each page is written to the test's folder.

Chromium is a system package (`.ci/run` installs Debian's `chromium`); without it these tests
fail with its name rather than skip.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

LOOPBACK = re.compile(r"^(?:https?|wss?)://(?:127\.0\.0\.1|localhost)(?::\d+)?/")
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
WAIT = 60.0  # upper bound on waiting for a page's content; never asserted as a timing


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: the browser tests need Debian's `chromium` package "
                    "(`apt-get install -y chromium`; .ci/run installs it)")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol; only loopback host names resolve."""

    def __init__(self, workdir: Path) -> None:
        from websockets.sync.client import connect

        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--no-proxy-server", "--disable-dev-shm-usage",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT
        while not (active.exists() and len(active.read_text().split()) == 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"chromium did not open its DevTools port (exit code {self.process.returncode})")
            time.sleep(0.1)
        port, path = active.read_text().split()
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=WAIT)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=WAIT))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while (requests a page makes after its load event)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    def open(self, url: str, ready_js: str, screenshot: Path, probe_js: str = "null") -> "Page":
        """Open URL in a new tab, wait until READY_JS is true, screenshot it; return what it did and PROBE_JS."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session)
        first = len(self.events)
        self.call("Page.navigate", session, url=url)
        deadline, ready = time.monotonic() + WAIT, False
        while time.monotonic() < deadline:
            result = self.call("Runtime.evaluate", session, expression=f"Boolean({ready_js})", returnByValue=True)
            if result.get("result", {}).get("value") is True:
                ready = True
                break
            self.pump(0.2)
        self.pump(0.5)  # late requests (fonts, images) still count
        text = self.call("Runtime.evaluate", session, expression="document.body ? document.body.innerText : ''",
                         returnByValue=True)["result"].get("value", "")
        dom = self.call("Runtime.evaluate", session, expression="document.documentElement.outerHTML",
                        returnByValue=True)["result"].get("value", "")
        probe = self.call("Runtime.evaluate", session, expression=probe_js, returnByValue=True)["result"].get("value")
        size = self.call("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = self.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": min(size["width"], 1600), "height": min(size["height"], 12000),
                               "scale": 1})
        import base64

        screenshot.write_bytes(base64.b64decode(shot["data"]))
        mine = [e for e in self.events[first:] if e.get("sessionId") == session]
        self.call("Target.closeTarget", targetId=target)
        return Page(url=url, ready=ready, text=text, dom=dom, events=mine, screenshot=screenshot, probe=probe)


class Page:
    def __init__(self, *, url: str, ready: bool, text: str, dom: str, events: list[dict[str, Any]],
                 screenshot: Path, probe: Any = None) -> None:
        self.url, self.ready, self.text, self.dom, self.screenshot = url, ready, text, dom, screenshot
        self.probe = probe
        self.requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
                if e["method"] == "Network.requestWillBeSent"}
        self.failed = [(urls.get(e["params"]["requestId"]), e["params"]["errorText"]) for e in events
                       if e["method"] == "Network.loadingFailed"]
        self.exceptions = [e["params"]["exceptionDetails"] for e in events if e["method"] == "Runtime.exceptionThrown"]
        self.console_errors = [e["params"]["entry"] for e in events
                               if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]

    def assert_offline(self) -> None:
        """Every request stayed on this machine, none failed, no script threw; the page got ready."""
        outside = [u for u in self.requests if not (LOOPBACK.match(u) or u.startswith(LOCAL_SCHEMES))]
        assert not outside, f"{self.url} asked for outside URLs: {outside}"
        assert self.ready, f"{self.url} never showed its content (screenshot {self.screenshot}): {self.text[:500]!r}"
        assert not self.failed, f"{self.url}: requests failed: {self.failed}"
        assert not self.exceptions, f"{self.url}: script errors: {self.exceptions}"
        assert not self.console_errors, f"{self.url}: console errors (a blocked load?): {self.console_errors}"
        # what the page would load (src of any element, <link href>), not where a reader may click to go
        loads = re.findall(r"""\bsrc\s*=\s*["']((?:https?:)?//[^"'/]+)""", self.dom, re.I)
        loads += re.findall(r"""<link\b[^>]*\bhref\s*=\s*["']((?:https?:)?//[^"'/]+)""", self.dom, re.I)
        assert [h for h in loads if not LOOPBACK.match(h + "/")] == [], f"{self.url} loads from {loads}"


# ------------------------------------------------------------------------------------ fixtures
def _iehub(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"iehub {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A hub after one sync of every sandboxed source and one build (a small scale)."""
    from iehub.config import Settings
    from iehub.sandboxes import systems

    home = tmp_path_factory.mktemp("browser") / "home"
    settings = Settings.from_env(home).ensure()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IEHUB_", "AIRFLOW"))}
    env.update(IEHUB_HOME=str(home), COLUMNS="160")
    running = []
    try:
        for system in systems().values():
            run = system.start(settings, scale=0.05, seed=7)
            running.append(run)
            env.update(run.env)
        _iehub(env, "sync")
    finally:
        for run in running:
            run.stop()
    build = _iehub(env, "build")
    yield {"home": home, "env": env, "build": build}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def feed_api(hub: dict[str, Any]) -> Iterator[str]:
    """A real `iehub serve` on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = hub["home"] / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "iehub.cli", "serve", "--port", str(port), "--workers", "1"],
                                  cwd=REPO, env=hub["env"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with urllib.request.urlopen(f"{base}/openapi.json", timeout=5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"iehub serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    yield base
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def _ops_batches(home: Path, by: str = "source") -> dict[str, tuple[int, int, int, int]]:
    """Landed batches and their rows in / loaded / quarantined per BY, straight from ops.batches."""
    from warehouse.publish import current_path

    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return {s: (b, i, l, q) for s, b, i, l, q in con.execute(
            f"SELECT {by}, count(*), sum(rows_in), sum(rows_loaded), sum(rows_quarantined) FROM ops.batches "
            "WHERE status = 'landed' GROUP BY ALL").fetchall()}
    finally:
        con.close()


#: Per table row of the quality site: (batches, rows in, loaded, quarantined) as the browser shows them.
COUNTS_JS = """Object.fromEntries([...document.querySelectorAll('tr[data-district], tr[data-source], tr[data-entity]')]
  .map(tr => [tr.dataset.district ? 'district:' + tr.dataset.district
              : tr.dataset.source ? 'source:' + tr.dataset.source : 'entity:' + tr.dataset.entity,
  ['batches', 'rows-in', 'rows-loaded', 'rows-quarantined'].map(c => tr.querySelector('td.' + c).innerText)]))"""


#: In-page links (#…) whose target is not on the page: a contents entry that leads nowhere.
DEAD_ANCHORS_JS = """[...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'))
  .filter(h => h.length > 1 && !document.getElementById(decodeURIComponent(h.slice(1))))"""


def _counts(page: Page, key: str) -> tuple[int, ...]:
    assert key in page.probe, f"no row {key} on {page.url}: {sorted(page.probe)}"
    return tuple(int(v.replace(",", "")) for v in page.probe[key])


# ---------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("path, ready", [
    ("/docs", "document.querySelectorAll('.opblock').length > 0"),
    ("/redoc", "document.querySelectorAll('[data-section-id^=\"operation\"], h2').length > 2"),
])
def test_feed_api_docs_render_offline_with_every_operation(feed_api: str, browser: Browser, tmp_path: Path,
                                                           path: str, ready: str) -> None:
    page = browser.open(f"{feed_api}{path}", ready, tmp_path / f"{path.strip('/')}.png")
    assert page.screenshot.stat().st_size > 10_000
    page.assert_offline()
    assert any(u.startswith(feed_api) and u.endswith(".js") for u in page.requests), page.requests  # scripts: ours
    assert f"{feed_api}/openapi.json" in page.requests
    with urllib.request.urlopen(f"{feed_api}/openapi.json", timeout=10) as response:
        spec = json.load(response)
    for route, operations in spec["paths"].items():
        for operation in operations.values():
            assert operation["summary"] in page.text, (path, route, operation["summary"])
        if path == "/docs":
            assert route.replace("{", "").replace("}", "") in page.text.replace("{", "").replace("}", ""), route


def test_quality_site_shows_ops_batches_per_district_and_source_offline(hub: dict[str, Any], browser: Browser,
                                                                        tmp_path: Path) -> None:
    home = hub["home"]
    assert "quality report: file://" in hub["build"].stdout  # every build refreshes it
    shown = _iehub(hub["env"], "quality", "site").stdout
    index = home / "quality" / "site" / "index.html"
    assert index.as_uri() in shown
    page = browser.open(index.as_uri(), "document.querySelectorAll('tr[data-district]').length > 0",
                        tmp_path / "quality-site.png", COUNTS_JS)
    page.assert_offline()
    ledger = _ops_batches(home)
    # the district systems speak for one district each: their rows are the district's rows
    for code, source, name in (("310110", "district_yangpu", "杨浦区"), ("310112", "district_minhang", "闵行区"),
                               ("310114", "district_jiading", "嘉定区")):
        assert _counts(page, f"district:{code}") == ledger[source], (code, source)
        assert name in page.text
    for source, counts in ledger.items():
        assert _counts(page, f"source:{source}") == counts, source
    for stream, counts in _ops_batches(home, "source || '.' || entity").items():
        assert _counts(page, f"entity:{stream}") == counts, stream
    total_in = sum(c[1] for c in ledger.values())
    assert f"{total_in:,}" in page.text
    assert "定期报送" in page.text and "按时率" in page.text
    for heading in ("来源 Sources", "各区 Districts", "时效 Freshness", "Rules that reject most"):
        assert heading in page.text, heading
    assert "@monthly" in page.text and "按时 on schedule" in page.text  # freshness against the spec's schedule
    assert page.dom.count("<svg class=\"chart\"") >= len(ledger)  # a chart per source (and per district)
    from warehouse.publish import current_path

    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        top_rule, = con.execute("SELECT rule FROM ops.quarantine GROUP BY rule ORDER BY count(*) DESC, rule "
                                "LIMIT 1").fetchone()
        mapping_rejects = con.execute("SELECT count(*) FROM ops.quarantine WHERE rule NOT LIKE 'quality.%'").fetchone()[0]
    finally:
        con.close()
    assert top_rule in page.text
    for link in re.findall(r'<a href="([^"#][^"]*)"', page.dom):  # the dictionary, the Data Docs: all there
        assert (index.parent / link).resolve().exists(), link
    anchors = browser.open(index.as_uri(), "document.querySelectorAll('nav a').length > 0",
                           tmp_path / "quality-site-again.png", DEAD_ANCHORS_JS)
    assert anchors.probe == [], f"in-page links that lead nowhere: {anchors.probe}"
    assert mapping_rejects and "映射 mapping" in page.text  # rows refused at mapping are counted too


@pytest.mark.parametrize("where", ["cli", "site"])
def test_data_dictionary_renders_offline_with_its_tables(hub: dict[str, Any], browser: Browser, tmp_path: Path,
                                                         where: str) -> None:
    if where == "cli":
        _iehub(hub["env"], "dictionary", "--out", str(tmp_path / "dictionary"))
        path = tmp_path / "dictionary" / "data_dictionary.html"
    else:
        path = hub["home"] / "quality" / "site" / "data_dictionary.html"
    page = browser.open(path.as_uri(), "document.querySelectorAll('h2').length > 10", tmp_path / "dictionary.png",
                        DEAD_ANCHORS_JS)
    page.assert_offline()
    assert page.probe == [], f"contents entries that lead nowhere: {page.probe}"
    headings = browser_headings(page)
    for table in ("core.organization", "core.project", "core.project_report", "core.trainee",
                  "marts.report_status", "marts.report_timeliness_by_lead_org", "marts.projects_by_district_industry",
                  "ops.batches", "ops.quarantine", "ref.codes"):
        assert any(h.startswith(table) for h in headings), (table, headings)
    assert "id_number" in page.text and "敏感个人信息" in page.text


def browser_headings(page: Page) -> list[str]:
    return [h.strip() for h in re.findall(r"<h2[^>]*>(.*?)</h2>", page.dom, re.S)]


def test_gx_data_docs_index_and_a_validation_page_render_offline(hub: dict[str, Any], browser: Browser,
                                                                 tmp_path: Path) -> None:
    index = hub["home"] / "quality" / "docs" / "index.html"
    assert index.exists(), "the sync wrote no GX Data Docs"
    page = browser.open(index.as_uri(), "document.querySelectorAll('a[href^=\"validations/\"]').length > 0",
                        tmp_path / "data-docs-index.png")
    page.assert_offline()
    assert "lingang_platform" in page.text and "municipal_projects" in page.text
    first = re.search(r'href="(validations/[^"]+\.html)"', page.dom)
    assert first, "the Data Docs index links no validation run"
    run = browser.open((index.parent / first.group(1)).as_uri(), "document.body.innerText.length > 200",
                       tmp_path / "data-docs-run.png")
    run.assert_offline()
    assert "expect" in run.text.lower() or "values must" in run.text.lower(), run.text[:500]
