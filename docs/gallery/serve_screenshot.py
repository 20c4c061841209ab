#!/usr/bin/env python3
"""The `segkit serve` page in a real browser: Debian's Chromium, driven by Selenium through the
system chromedriver (no browser download). ``drive_page`` is what the browser test runs; run as
a script it serves the default person model on a free port of 127.0.0.1, drops a shipped COCO
photo on the page and saves the README's screenshot:

    .venv/bin/python docs/gallery/serve_screenshot.py        # -> docs/gallery/serve.png
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHOTO = REPO / "images" / "000000519208.jpg"


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) of the system, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).exists()), None)
    return (chromium, driver) if chromium and driver else None


def open_browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    # the system driver, named explicitly: Selenium Manager's downloads are unreachable here
    return webdriver.Chrome(service=Service(executable_path=paths[1]), options=opts)


def drive_page(url: str, photo: Path = PHOTO, screenshot: Path | None = None, driver=None,
               timeout: float = 60) -> dict:
    """Load the page at ``url``, choose ``photo`` in its file field, wait for the cut-out, and
    return what the page shows: each picture's natural size, the status line, the error box and
    the download names. ``screenshot``: save the window there once the results are in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    own = driver is None
    driver = driver or open_browser()
    try:
        driver.get(url)
        WebDriverWait(driver, timeout).until(
            lambda d: d.execute_script("return document.getElementById('model').options.length > 0"))
        driver.find_element(By.ID, "file").send_keys(str(Path(photo).resolve()))
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
            "const i = document.getElementById('cutout'), e = document.getElementById('error');"
            "return !e.hidden || (!i.hidden && i.complete && i.naturalWidth > 0)"))
        state = driver.execute_script("""
            const size = (id) => { const i = document.getElementById(id);
                                    return i.hidden ? null : [i.naturalWidth, i.naturalHeight]; };
            const link = (id) => { const a = document.getElementById(id); return a.hidden ? null : a.download; };
            return {original: size('original'), overlay: size('overlay'), cutout: size('cutout'),
                    status: document.getElementById('status').textContent,
                    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
                    downloads: [link('original-download'), link('overlay-download'), link('cutout-download')]};
        """)
        if screenshot is not None:
            time.sleep(0.3)  # let the last image paint
            driver.save_screenshot(str(screenshot))
        return state
    finally:
        if own:
            driver.quit()


def main() -> int:
    sys.path.insert(0, str(REPO / "lib"))
    from segkit.serve.app import create_app
    from segkit.serve.server import listen, make_server, url
    from segkit.serve.service import Service

    service = Service(None)
    sock = listen("127.0.0.1", 0)
    server = make_server(create_app(service))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        out = HERE / "serve.png"
        state = drive_page(url(sock), PHOTO, out)
        from PIL import Image

        with Image.open(out) as im:  # a 256-colour PNG: a third of the bytes, for the README
            small = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        small.save(out, optimize=True)
        print(f"{out}: {state}")
        return 0 if state["error"] is None else 1
    finally:
        server.should_exit = True
        thread.join()
        service.close()


if __name__ == "__main__":
    sys.exit(main())
