"""The app in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by selenium).

Opens a phantom DICOM, generates a short loop at 4 DDIM steps with the packaged ``kdm_phantom_112``,
checks that the real | generated <video> plays, exports a synthetic DICOM and reads it back with
pydicom, browses a results folder and shows a one-line message for a bad file. The page must load
with no internet (only 127.0.0.1 and data: URLs are requested). Screenshots of the main views go to
``$ECHOKDM_APP_SCREENSHOTS`` when set (``docs/images`` holds the README's), else to the test's folder.

In CI (``CI=true``) a missing browser is a failure; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
_TIMEOUT_S = 60


def _browser_or_skip():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as exc:
        missing.append(f"python package {exc.name} (pip install -e '.[test]')")
    if missing:
        reason = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, phantom_dicoms):
    _browser_or_skip()
    from echokdm.app import build_app, launch

    work = tmp_path_factory.mktemp("app_work")
    page = build_app("kdm_phantom_112", "seg_phantom_112", work=work)
    url = launch(page, port=_free_port(), block=False)
    yield url, page
    page.close()


@pytest.fixture(scope="module")
def browser(served):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1500"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(_TIMEOUT_S)
    yield driver
    driver.quit()


def _screens(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("ECHOKDM_APP_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, condition, what: str, timeout: float = _TIMEOUT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: condition(d))
    except TimeoutException:
        status = driver.find_elements("css selector", "#status")
        raise AssertionError(f"timed out waiting for {what}; status: "
                             f"{status[0].text if status else '(none)'}") from None


def _type(driver, selector: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", selector)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(Keys.TAB)


def _tab(driver, name: str) -> None:
    for button in driver.find_elements("css selector", "button[role='tab']"):
        if button.text.strip() == name:
            button.click()
            return
    raise AssertionError(f"no tab {name!r}")


def _video_plays(driver, selector: str) -> bool:
    return bool(driver.execute_script(
        "const v = document.querySelector(arguments[0]); if (!v) return false;"
        "if (v.paused) { v.muted = true; v.play(); }"
        "return v.readyState >= 2 && !v.paused && v.currentTime > 0;", selector))


def _status(driver) -> str:
    return driver.find_element("css selector", "#status").text


def test_app_in_a_browser(served, browser, phantom_dicoms, synthesize_folder, tmp_path, tmp_path_factory):
    import pydicom

    url, page = served
    screens = _screens(tmp_path_factory)
    started = time.monotonic()
    browser.get(url)
    _wait(browser, lambda d: d.find_elements("css selector", "#path textarea, #path input"), "the page")

    # offline: the page asks nothing of the internet
    requested = {json.loads(e["message"])["message"].get("params", {}).get("request", {}).get("url", "")
                 for e in browser.get_log("performance")}
    outside = sorted(u for u in requested if u and not u.startswith(("http://127.0.0.1", "data:", "blob:")))
    assert not outside, f"the page fetched from outside this machine: {outside}"

    # a bad file: one clear line
    bad = tmp_path / "broken.dcm"
    bad.write_text("not an echo\n")
    _type(browser, "#path textarea", str(bad))
    browser.find_element("css selector", "#open").click()
    _wait(browser, lambda d: "⚠" in _status(d), "the bad-file message")
    assert "broken.dcm" in _status(browser) and "\n" not in _status(browser).strip()

    # open the phantom DICOM: the cine with mask, keypoints and volume curve plays; EF, ED/ES, flags shown
    dicom = phantom_dicoms.parent / "dicom" / "phantom0000.dcm"
    _type(browser, "#path textarea", str(dicom))
    browser.find_element("css selector", "#open").click()
    _wait(browser, lambda d: "EF" in d.find_element("css selector", "#summary").text, "the clip's EF")
    summary = browser.find_element("css selector", "#summary").text
    assert "ED frame" in summary and "ES frame" in summary and "Flags" in summary
    _wait(browser, lambda d: _video_plays(d, "#clip_video video"), "the cine to play")
    browser.save_screenshot(str(screens / "app_clip.png"))

    # generate: own beat, 4 DDIM steps, k = 2; real | generated plays with the re-measured EF
    _tab(browser, "Generate")
    _wait(browser, lambda d: d.find_element("css selector", "#generate").is_displayed(), "the Generate tab")
    _type(browser, "#steps input", "4")
    _type(browser, "#k input", "2")
    _type(browser, "#n_frames input", "10")
    browser.find_element("css selector", "#generate").click()
    _wait(browser, lambda d: "re-measured" in d.find_element("css selector", "#result").text, "the generated loop",
          timeout=120)
    assert "4 DDIM steps" in browser.find_element("css selector", "#result").text
    _wait(browser, lambda d: _video_plays(d, "#loop_video video"), "the real | generated video to play")
    browser.save_screenshot(str(screens / "app_generate.png"))

    # export a synthetic DICOM with the CLI's writer and read it back
    out = tmp_path / "exports"
    _type(browser, "#out textarea", str(out))
    browser.find_element("css selector", "#export").click()
    _wait(browser, lambda d: "wrote" in _status(d), "the export")
    written = sorted(out.glob("*.dcm"))
    assert len(written) == 1 and (out / f"{written[0].stem}.mp4").exists()
    ds = pydicom.dcmread(written[0])
    assert ds.SyntheticData == "YES" and int(ds.NumberOfFrames) == 10

    # browse a synthesize folder: worst first, a row plays
    _tab(browser, "Results")
    _type(browser, "#folder textarea", str(synthesize_folder))
    browser.find_element("css selector", "#open_folder").click()
    _wait(browser, lambda d: "worst first" in _status(d), "the results table")
    first = _wait(browser, lambda d: d.find_elements("css selector", "#results_table [data-testid='cell-0-0']"),
                  "the table's first row")[0]
    assert first.text.strip() == "synthetic_00001"  # the loop that missed its EF most comes first
    first.click()
    _wait(browser, lambda d: "playing row 0" in _status(d), "the row to load")
    _wait(browser, lambda d: _video_plays(d, "#row_generated video"), "the row's video to play")
    browser.save_screenshot(str(screens / "app_results.png"))
    assert time.monotonic() - started < 150
