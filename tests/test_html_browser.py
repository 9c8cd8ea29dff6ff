"""The HTML reports in a real headless Chromium (Debian's package, started by the test, driven over
the Chrome DevTools protocol with the `websockets` package): the page renders, its plots are
visible (a screenshot of each plot is not blank), the alert text is on the page, and the page made
no network request (every request the Network domain saw was the file itself or an embedded
``data:`` image; a control page with one remote image shows that such a request is seen)."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from audioqc import html_report
from audioqc.compare import compare
from audioqc.policy import load_policy
from audioqc.trends import trends
from testing.material.reports import synthetic_history, write_history

pytestmark = pytest.mark.timeout(300)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]


class Browser:
    """Headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        exe = shutil.which("chromium")
        assert exe, "headless Chromium renders the HTML report: scripts/setup.sh installs it (apt package chromium)"
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert self.proc.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            try:
                self.events.append(json.loads(self.ws.recv(timeout=1)))
            except TimeoutError:
                pass
        raise AssertionError(f"no {method} within {timeout} s")

    def open(self, url: str) -> list[str]:
        """Load ``url`` and return the URL of every request the page made."""
        self.events.clear()
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        time.sleep(0.5)  # late requests (none expected) still arrive
        self.call("Runtime.evaluate", expression="1")  # drains pending events into self.events
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, clip: dict | None = None) -> np.ndarray:
        params = {"format": "png", "captureBeyondViewport": True}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _not_blank(pixels: np.ndarray) -> float:
    """Share of pixels that differ from the image's most common colour by more than a little."""
    flat = pixels.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int64) << 16) | (flat[:, 1].astype(np.int64) << 8) | flat[:, 2]
    common = int(np.argmax(np.bincount(packed)))
    background = np.array([common >> 16, (common >> 8) & 255, common & 255])
    return float(np.mean(np.abs(flat - background).sum(axis=1) > 30))


def _check_page(browser: Browser, path: Path, words: list[str]) -> None:
    requests = browser.open(path.as_uri())
    assert path.as_uri() in requests  # the recorder saw the page itself
    remote = [u for u in requests if not u.startswith(("file://", "data:"))]
    assert remote == [], remote
    text = browser.js("document.body.innerText")
    for w in words:
        assert w in text, w
    images = browser.js(
        "Array.from(document.images).map(i => {const r = i.getBoundingClientRect(); "
        "return [i.complete, i.naturalWidth, r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]})"
    )
    assert images and all(done and natural > 0 and w > 100 and h > 50 for done, natural, _, _, w, h in images)
    for _, _, x, y, w, h in images[:4]:  # each plot, as the browser drew it, is not blank
        shot = browser.screenshot({"x": x, "y": y, "width": w, "height": h})
        assert _not_blank(shot) > 0.02
    whole = browser.screenshot()
    assert whole.shape[0] > 900 and _not_blank(whole) > 0.02


def test_trends_report_renders_with_alert_and_no_network(browser, tmp_path):
    url = str(tmp_path / "report")
    write_history(url, synthetic_history(6, 300, shift={"group": "creatorB", "metric": "quality_score_average",
                                                         "delta": -1.5}, seed=1))
    result = trends(url, group_by="prefix")
    assert len(result.alerts) == 1
    page = tmp_path / "trends.html"
    page.write_text(html_report.trends_html(result, policy=load_policy("ebu-r128")))
    _check_page(browser, page, ["ALERT", result.alerts[0].message, "creatorB/"])
    # the alert comes before the plots on the page
    assert browser.js("document.querySelector('.alert').getBoundingClientRect().top < "
                      "document.querySelector('figure').getBoundingClientRect().top")


def test_compare_report_renders_with_no_network(browser, tmp_path):
    url = str(tmp_path / "report")
    hist = synthetic_history(2, 60, new_per_run=0, seed=2)
    write_history(url, hist)
    result = compare(f"{url}#run-000", f"{url}#run-001", gates=["quality_score_average:-0.3"])
    page = tmp_path / "compare.html"
    page.write_text(html_report.compare_html(result))
    _check_page(browser, page, ["all gates hold", "quality_score_average:-0.3"])


def test_a_remote_image_would_be_seen(browser, tmp_path):
    """The control: a page with one remote image makes a request the recorder sees (loopback,
    a closed port; nothing leaves the machine)."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><p>control</p><img src="http://127.0.0.1:9/x.png"></body></html>')
    requests = browser.open(page.as_uri())
    assert "http://127.0.0.1:9/x.png" in requests
