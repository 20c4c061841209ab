"""segkit.io.window under a real (virtual) X server: pixels drawn, keys, closing, no display."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures.xdisplay import close_window, press_key, screenshot, xvfb
from segkit.io.window import Window, WindowError

SCREEN = (640, 480)


@pytest.fixture(scope="module")
def display():
    with xvfb(*SCREEN) as d:
        yield d


@pytest.fixture
def on_display(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    return display


def _pattern(h=120, w=160):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :]        # red ramps left to right
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 2    # green ramps top to bottom
    img[40:80, 60:100, 2] = 255                               # a blue square
    return img


def _window_pixels(display, win, h, w):
    root = win._root
    root.update()
    x, y = root.winfo_rootx(), root.winfo_rooty()
    shot = np.asarray(screenshot(display))
    return shot[y:y + h, x:x + w]


def test_show_draws_the_image_pixel_for_pixel(on_display):
    img = _pattern()
    with Window("segkit-test-draw") as win:
        win.show(img)
        np.testing.assert_array_equal(_window_pixels(on_display, win, *img.shape[:2]), img)
        # A second frame of the same size reuses the photo and replaces the pixels.
        img2 = 255 - img
        win.show(img2)
        np.testing.assert_array_equal(_window_pixels(on_display, win, *img.shape[:2]), img2)


def test_gray_and_rgba_images_are_shown_as_rgb(on_display):
    gray = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (50, 1))
    with Window("segkit-test-gray") as win:
        win.show(gray)
        shown = _window_pixels(on_display, win, *gray.shape)
        np.testing.assert_array_equal(shown, np.repeat(gray[..., None], 3, axis=2))
        rgba = np.dstack([_pattern(), np.full((120, 160), 7, np.uint8)])
        win.show(rgba)
        np.testing.assert_array_equal(_window_pixels(on_display, win, 120, 160), rgba[..., :3])


def test_images_larger_than_the_screen_are_scaled_to_fit(on_display):
    big = np.full((2000, 3000, 3), 200, np.uint8)
    with Window("segkit-test-big") as win:
        win.show(big)
        win._root.update()
        assert win._root.winfo_width() <= SCREEN[0] and win._root.winfo_height() <= SCREEN[1]
        assert abs(win._root.winfo_width() / win._root.winfo_height() - 1.5) < 0.02  # aspect kept


@pytest.mark.parametrize("keysym, event", [("q", "quit"), ("Escape", "quit"), ("a", "a"), ("space", "space")])
def test_real_key_presses_become_events(on_display, keysym, event):
    with Window("segkit-test-keys") as win:
        win.show(_pattern())
        assert win.poll() is None
        x, y = win._root.winfo_rootx(), win._root.winfo_rooty()
        press_key(on_display, keysym, at=(x + 10, y + 10))
        assert win.wait(3000) == event


def test_wait_times_out_without_events(on_display):
    with Window("segkit-test-timeout") as win:
        win.show(_pattern())
        assert win.wait(50) is None


def test_closing_the_window_reports_closed_and_stays_closed(on_display):
    with Window("segkit-test-close") as win:
        win.show(_pattern())
        assert close_window(on_display, "segkit-test-close")
        assert win.wait(3000) == "closed"
        assert win.closed
        win.show(_pattern())          # no error after closing: loops just end
        assert win.poll() == "closed"
        assert win.wait(0) == "closed"  # never blocks once closed


def test_no_reachable_display_raises_window_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":987")  # nothing listens there
    with pytest.raises(WindowError, match="cannot open a window"):
        Window("x").open()
