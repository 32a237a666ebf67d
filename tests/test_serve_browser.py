"""The web page in headless Chromium: type two Korean sentences, click, read the verdict on screen.

Playwright drives the system's Chromium (Debian's ``chromium``, no browser download) with the
page's JavaScript on (the answer comes from ``fetch``) and off (the form posts and the server
renders the answer). Needs a Korean font too; ``make test`` installs both when they are missing:
``apt-get update && apt-get install -y chromium fonts-nanum``. The page with its verdict is saved
as ``tests/artifacts/serve_page.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tuning.serving import export_untrained
from tuning.serving.launcher import ServerProcess
from tuning.serving.page import SIMILAR_TEXT
from tuning.settings import ModelConfig

APT = "apt-get update && apt-get install -y chromium fonts-nanum"
# Playwright already passes --headless, --no-sandbox, --no-first-run, --disable-sync,
# --disable-background-networking and --disable-component-update; this machine needs these too.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic"]
SENTENCE1, SENTENCE2 = "한 남자가 말을 타고 있다.", "사람이 말을 탄다."
TIMEOUT_MS = 30_000
SCREENSHOT = Path(__file__).resolve().parent / "artifacts" / "serve_page.png"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(f"Chromium is not installed: run `make test`, or install it (as root) with: {APT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A tiny bi-encoder: 5 x cosine of untrained embeddings is above 3, so the verdict is "similar".
    cfg = ModelConfig(name_or_path="builtin:tiny", architecture="bi", max_length=64)
    folder = export_untrained(tmp_path_factory.mktemp("browser") / "best_model", cfg, [SENTENCE1, SENTENCE2])
    with ServerProcess(folder) as proc:
        yield proc


@pytest.fixture
def javascript() -> bool:
    """Whether the page's scripts run; a test sets it with ``parametrize``."""
    return True


@pytest.fixture
def page(chromium: Browser, server: ServerProcess, javascript: bool) -> Iterator[Page]:
    """The page, freshly opened in a context of its own."""
    context = chromium.new_context(java_script_enabled=javascript)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(server.url)
    yield page
    context.close()


def submit(page: Page, sentence1: str, sentence2: str) -> None:
    """Type both sentences key by key, as a person would, then click the button."""
    page.locator("#sentence1").press_sequentially(sentence1)
    page.locator("#sentence2").press_sequentially(sentence2)
    page.evaluate("window.sameDocument = true")  # gone if the click loads a new document
    page.locator("#submit").click()


def expect_verdict(page: Page, server: ServerProcess) -> None:
    score = httpx.post(f"{server.url}/similarity", json={"sentence1": SENTENCE1, "sentence2": SENTENCE2})
    expect(page.locator("#verdict")).to_be_visible()
    expect(page.locator("#verdict")).to_have_text(SIMILAR_TEXT)
    expect(page.locator("#score")).to_have_text(f"유사도 점수: {score.json()['score']:.2f} / 5")


def test_page_shows_the_verdict_with_javascript(page: Page, server: ServerProcess) -> None:
    submit(page, SENTENCE1, SENTENCE2)
    expect_verdict(page, server)
    # The answer came from fetch, not from a form post that replaced the document.
    assert page.evaluate("window.sameDocument") is True
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    print(f"screenshot: {SCREENSHOT}")


@pytest.mark.parametrize("javascript", [False])
def test_page_shows_the_verdict_without_javascript(page: Page, server: ServerProcess) -> None:
    submit(page, SENTENCE1, SENTENCE2)
    expect_verdict(page, server)
    # The answer is a new page the server rendered for the form post.
    assert page.evaluate("window.sameDocument") is None


def test_page_renders_korean_in_a_font_of_its_stack(page: Page) -> None:
    stack = page.evaluate("getComputedStyle(document.body).fontFamily")
    names = {name.strip(' "').replace(" ", "").lower() for name in stack.split(",")}
    # The fonts Chromium actually drew the Korean heading with (DevTools protocol, CSS domain).
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    heading = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "h1"})["nodeId"]
    used = {
        font["familyName"] for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": heading})["fonts"]
    }
    assert used and all(name.replace(" ", "").lower() in names for name in used), (
        f"the Korean heading is drawn with {used}, none of the page's fonts ({stack}): no Korean "
        f"font is installed here, and Hangul shows as boxes. Install one: {APT}"
    )


@pytest.mark.parametrize("javascript", [True, False])
def test_page_shows_errors(page: Page) -> None:
    submit(page, SENTENCE1, "   ")  # passes the browser's `required`, not the server
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("sentence2")
    expect(error).to_contain_text("whitespace")
    expect(page.locator("#result")).to_be_hidden()
