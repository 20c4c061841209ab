"""The page in a real browser (Debian's Chromium via Selenium and the system chromedriver): a COCO
photo chosen in the file field comes back as an overlay and a cut-out of the photo's size, with a
download link each; the keyboard reaches the file field; a broken photo is an error in words.
The README's screenshot is taken by the same function (docs/gallery/serve_screenshot.py)."""
from __future__ import annotations

import importlib.util
import os

import pytest
from PIL import Image

from fixtures.serving import PHOTO, REPO

_spec = importlib.util.spec_from_file_location("serve_screenshot", REPO / "docs" / "gallery" / "serve_screenshot.py")
shot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shot)


@pytest.fixture(scope="module")
def browser():
    if shot.browser_paths() is None:
        if os.environ.get("SEGKIT_REQUIRE_BROWSER") == "1":
            pytest.fail("SEGKIT_REQUIRE_BROWSER=1 but chromium / chromedriver are missing")
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    driver = shot.open_browser()
    yield driver
    driver.quit()


def test_page_uploads_a_photo_and_shows_overlay_and_cutout(browser, serve_url, tmp_path):
    state = shot.drive_page(serve_url + "/", PHOTO, tmp_path / "serve.png", driver=browser)
    size = list(Image.open(PHOTO).size)
    assert state["error"] is None, state
    assert state["original"] == size and state["overlay"] == size and state["cutout"] == size
    assert state["status"].startswith("Done: 000000519208.jpg")
    assert state["downloads"] == ["000000519208.jpg", "000000519208_overlay.jpg", "000000519208_cutout.png"]
    with Image.open(tmp_path / "serve.png") as im:  # the screenshot the README shows is taken this way
        assert im.size[0] >= 1000


def test_keyboard_reaches_the_file_field_and_errors_are_words(browser, serve_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(serve_url + "/")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "file"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PHOTO.read_bytes()[:20000])
    state = shot.drive_page(serve_url + "/", broken, driver=browser)
    assert state["error"] is not None and "truncated" in state["error"] and "broken.jpg" in state["error"]
    assert state["cutout"] is None
