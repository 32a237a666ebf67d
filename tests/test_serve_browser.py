"""The web page in headless Chromium: type two Korean sentences, click, read the verdict on screen.

Chromium is driven over the DevTools protocol (``websocket-client``) with DOM and Input commands
only, so the same steps work with the page's JavaScript on (the answer comes from ``fetch``) and
off (the form posts and the server renders the answer). Needs Debian's chromium and a Korean
font: ``apt-get update && apt-get install -y chromium fonts-nanum``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from tuning.config import ModelConfig
from tuning.serving import export_untrained
from tuning.serving.launcher import HOST, ServerProcess
from tuning.serving.page import SIMILAR_TEXT

APT = "apt-get update && apt-get install -y chromium fonts-nanum"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--remote-debugging-address={HOST}",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
]
SENTENCE1, SENTENCE2 = "한 남자가 말을 타고 있다.", "사람이 말을 탄다."
TIMEOUT = 30.0


class DevTools:
    """A DevTools-protocol session with one page: commands in, results out, events skipped.

    Page state is read with ``Runtime.evaluate``, which works with the page's scripts disabled too;
    typing and clicking go through ``Input``, as a person's keyboard and mouse would.
    """

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=TIMEOUT, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def until(self, expression: str, what: str) -> Any:
        """The value of ``expression`` once it is truthy; the page may be loading meanwhile."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the document is being replaced (navigation, form post)
                value = None
            if value:
                return value
            time.sleep(0.1)
        body = self.evaluate("document.body.innerText")
        raise AssertionError(f"{what}: not within {TIMEOUT} s; the page reads:\n{body}")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.until("document.readyState === 'complete' && !!document.getElementById('submit')", f"open {url}")

    def click(self, selector: str) -> None:
        """Scroll the element into view and click its middle with the left mouse button."""
        x, y = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        """Click into a field and type ``text`` as a committed IME string (how Korean input arrives)."""
        self.click(selector)
        self.send("Input.insertText", text=text)

    def shown_text(self, selector: str) -> str:
        """The text of ``selector`` as rendered, once it is shown and not empty."""
        expression = (
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " return e && !e.hidden && e.offsetParent !== null ? e.innerText.trim() : ''; })()"
        )
        return str(self.until(expression, f"{selector} shown"))


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(f"Chromium is not installed; install it (as root) with: {APT}")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A tiny bi-encoder: 5 x cosine of untrained embeddings is above 3, so the verdict is "similar".
    cfg = ModelConfig(name_or_path="builtin:tiny", architecture="bi", max_length=64)
    folder = export_untrained(tmp_path_factory.mktemp("browser") / "best_model", cfg, [SENTENCE1, SENTENCE2])
    with ServerProcess(folder) as proc:
        yield proc


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start its DevTools server (exit code {process.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://{HOST}:{port}/json/list", timeout=TIMEOUT).json()
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        yield devtools
        devtools.ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def api_score(server: ServerProcess) -> float:
    response = httpx.post(f"{server.url}/similarity", json={"sentence1": SENTENCE1, "sentence2": SENTENCE2})
    return float(response.json()["score"])


def test_page_shows_the_verdict_with_javascript(browser: DevTools, server: ServerProcess) -> None:
    browser.open(server.url)
    browser.type_into("#sentence1", SENTENCE1)
    browser.type_into("#sentence2", SENTENCE2)
    browser.evaluate("window.sameDocument = true")
    browser.click("#submit")
    assert browser.shown_text("#verdict") == SIMILAR_TEXT
    assert browser.shown_text("#score") == f"유사도 점수: {api_score(server):.2f} / 5"
    # The answer came from fetch, not from a form post that replaced the document.
    assert browser.evaluate("window.sameDocument === true") is True


def test_page_shows_the_verdict_without_javascript(browser: DevTools, server: ServerProcess) -> None:
    browser.send("Emulation.setScriptExecutionDisabled", value=True)
    browser.open(server.url)
    browser.type_into("#sentence1", SENTENCE1)
    browser.type_into("#sentence2", SENTENCE2)
    browser.evaluate("window.sameDocument = true")
    browser.click("#submit")
    assert browser.shown_text("#verdict") == SIMILAR_TEXT
    assert browser.shown_text("#score") == f"유사도 점수: {api_score(server):.2f} / 5"
    # The answer is a new page the server rendered for the form post.
    assert browser.evaluate("window.sameDocument === undefined") is True


def test_page_renders_korean_in_a_font_of_its_stack(browser: DevTools, server: ServerProcess) -> None:
    browser.open(server.url)
    stack = browser.evaluate("getComputedStyle(document.body).fontFamily")
    names = {name.strip(' "').replace(" ", "").lower() for name in stack.split(",")}
    browser.send("DOM.enable")
    browser.send("CSS.enable")
    root = browser.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
    heading = browser.send("DOM.querySelector", nodeId=root, selector="h1")["nodeId"]
    fonts = browser.send("CSS.getPlatformFontsForNode", nodeId=heading)["fonts"]
    used = {font["familyName"] for font in fonts}
    assert all(name.replace(" ", "").lower() in names for name in used), (
        f"the Korean heading is drawn with {used}, none of the page's fonts ({stack}): no Korean "
        f"font is installed here, and Hangul shows as boxes. Install one: {APT}"
    )


@pytest.mark.parametrize("javascript", [True, False])
def test_page_shows_errors(browser: DevTools, server: ServerProcess, javascript: bool) -> None:
    browser.send("Emulation.setScriptExecutionDisabled", value=not javascript)
    browser.open(server.url)
    browser.type_into("#sentence1", SENTENCE1)
    browser.type_into("#sentence2", "   ")  # passes the browser's `required`, not the server
    browser.click("#submit")
    error = browser.shown_text("#error")
    assert "sentence2" in error and "whitespace" in error
    assert browser.evaluate("document.getElementById('result').hidden") is True
