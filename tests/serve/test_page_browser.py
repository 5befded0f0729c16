"""The page in a real browser: headless Debian Chromium driven by Selenium, against a live uvicorn."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings, create_app

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")  # offline: no host name resolves


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(predictor: Predictor) -> Iterator[str]:
    """uvicorn serving the tiny model on a free loopback port, in a background thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, ServeSettings(port=port)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not (server.started and server.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path: Path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"no browser: needs Debian's chromium ({CHROMIUM}) and chromium-driver ({CHROMEDRIVER})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def write_photo(path: Path, seed: int) -> Path:
    """A 96x72 PNG with smooth colour gradients and noise (a photo-like image, not a flat square)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:72, 0:96]
    pixels = np.stack([x * 2.5, y * 3.3, 255 - x * 2.0], axis=2) + rng.normal(0, 12, (72, 96, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


# A PNG drawn in the page, handed to the drop zone (a drop event) or to the document (a paste event)
# as a browser does for a dragged or pasted file.
DROP_OR_PASTE = """
const [how, done] = arguments;
const canvas = Object.assign(document.createElement("canvas"), {width: 64, height: 48});
const pen = canvas.getContext("2d"), fill = pen.createLinearGradient(0, 0, 64, 48);
fill.addColorStop(0, "#c33"); fill.addColorStop(1, "#33c"); pen.fillStyle = fill; pen.fillRect(0, 0, 64, 48);
canvas.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], how + ".png", {type: "image/png"}));
  if (how === "dropped") {
    document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
  } else {
    document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true}));
  }
  done();
}, "image/png");
"""


def tab_stops(browser, count: int) -> list[str]:
    """The id (or tag) of each element the Tab key focuses from the top of the page, visible ones only."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    stops = []
    for _ in range(count):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        stops.append(browser.execute_script(
            "const e = document.activeElement, box = e.getBoundingClientRect();"
            "return box.width >= 8 && box.height >= 8 ? (e.id || e.tagName.toLowerCase()) : 'invisible ' + e.id;"))
    return stops


def test_page_predicts_explains_and_shows_errors(live_server: str, browser, predictor: Predictor,
                                                 tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    photo = write_photo(tmp_path / "photo.png", 0)
    expected = predictor.predict(str(photo), top_k=3)[0]
    browser.get(live_server)
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), "3 classes"))
    assert tab_stops(browser, 4) == ["drop", "compare", "clear", "summary"], "every Tab stop is a visible control"

    browser.find_element(By.ID, "file").send_keys(str(photo))
    top = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".card .top[data-label]")))
    assert top.get_attribute("data-label") == expected.label
    assert f"{100 * expected.probability:.1f}%" in top.text
    bars = browser.find_elements(By.CSS_SELECTOR, ".card .bars li")
    assert len(bars) == 3 and "%" in bars[0].text
    assert "latency" in browser.find_element(By.CSS_SELECTOR, ".card .meta").text
    overlay = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".card img.overlay")))
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
    browser.save_screenshot(str(tmp_path / "page-prediction.png"))
    slider = browser.find_element(By.CSS_SELECTOR, ".card .slider input")
    browser.execute_script("arguments[0].value = 20; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert overlay.value_of_css_property("opacity") == "0.2"

    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image\n")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait.until(ready.text_to_be_present_in_element((By.ID, "error"), "unsupported file type"))
    assert "notes.txt" in browser.find_element(By.ID, "error").text
    assert "415" in browser.find_element(By.ID, "error").text

    for how in ("dropped", "pasted"):
        browser.execute_async_script(DROP_OR_PASTE, how)
        wait.until(lambda _, name=f"{how}.png": browser.execute_script(
            "const card = document.querySelector('.card');"
            "return card && card.querySelector('h2').textContent === arguments[0] && card.querySelector('.top[data-label]')"
            " && card.querySelector('img.preview').naturalWidth > 0", name))
    assert browser.find_element(By.ID, "error").text == "", "a good image clears the last error"
    revoked = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.querySelector('.card img.preview').src).then(() => done(false), () => done(true));")
    assert revoked, "a shown preview's object URL is released (no blob kept per upload)"

    browser.find_element(By.ID, "compare").click()
    second = write_photo(tmp_path / "second.png", 1)
    browser.find_element(By.ID, "file").send_keys(f"{photo}\n{second}")
    wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".card .top[data-label]")) >= 2)
    assert "compare" in browser.find_element(By.ID, "results").get_attribute("class")
    browser.set_window_size(390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), \
        "no sideways scrolling on a phone-sized window"
    browser.save_screenshot(str(tmp_path / "page-phone.png"))
    assert (tmp_path / "page-prediction.png").stat().st_size > 5000


def test_reference_renders_offline_and_swagger_would_not(live_server: str, browser, tmp_path: Path) -> None:
    """/docs renders with the network blocked (no host name resolves) and loads nothing; the CDN-fed
    Swagger UI at /docs/swagger stays blank under the same browser, which is why /docs replaced it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(live_server + "docs")
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "section h3")]
    assert {"POST /predict", "POST /explain", "GET /healthz", "PredictResponse", "ErrorResponse"} <= set(headings)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.find_element(By.CSS_SELECTOR, "#op-post-predict pre.curl").is_displayed()
    stops = []
    while len(stops) < 5 and "#" not in (stops or [""])[-1]:
        ActionChains(browser).send_keys(Keys.TAB).perform()
        stops.append(browser.switch_to.active_element.get_attribute("href") or "")
    assert stops[:2] == [live_server + "docs/swagger", live_server + "openapi.json"] and "#op-" in stops[-1], stops
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.execute_script("return location.hash") == "#" + stops[-1].split("#")[1], "links work from the keyboard"
    browser.set_window_size(390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), \
        "no sideways scrolling on a phone-sized window"
    browser.save_screenshot(str(tmp_path / "reference-phone.png"))

    browser.get(live_server + "docs/swagger")
    time.sleep(0.5)
    assert browser.execute_script("return document.getElementById('swagger-ui').children.length") == 0
