"""A minimal image window drawn with Tk (the OpenCV wheel we use is headless: no cv2.imshow).

    with Window("segkit") as win:
        win.show(rgb_uint8)
        event = win.wait(0)     # block for a key; win.wait(ms) / win.poll() never block long

Events: None (nothing happened), a Tk key name ("space", "a", "Left", ...), "quit" (q or Esc)
or "closed" (the window was closed). After "closed", show() does nothing and every call
returns "closed" again, so display loops end by themselves.

Only open a Window when ``segkit.cli.display_available()`` says a display exists; if Tk still
cannot connect, opening raises WindowError (a SegkitError) instead of aborting the process.
Tk is not thread-safe: create and use a Window on one thread (the main one).
"""
from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np

from segkit.errors import SegkitError
from segkit.io.sinks import Sink

QUIT_KEYS = {"q", "Q", "Escape"}


class WindowError(SegkitError):
    """The window could not be opened (no usable display)."""


class Window:
    def __init__(self, title: str = "segkit", fit_screen: bool = True):
        self.title = title
        self.fit_screen = fit_screen
        self._root = None
        self._label = None
        self._photo = None
        self._events: deque[str] = deque()
        self._closed = False
        self._size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "Window":
        import tkinter as tk

        try:
            self._root = tk.Tk()
        except tk.TclError as e:
            raise WindowError(f"cannot open a window ({e})") from None
        self._root.title(self.title)
        self._root.configure(background="black")
        self._label = tk.Label(self._root, borderwidth=0, highlightthickness=0, background="black")
        self._label.pack()
        self._root.bind("<Key>", self._on_key)
        self._root.protocol("WM_DELETE_WINDOW", self._on_close)
        # Leave room for window decorations and panels when fitting big images.
        self._max_size = (max(320, self._root.winfo_screenwidth() - 40),
                          max(240, self._root.winfo_screenheight() - 100))
        return self

    def close(self) -> None:
        if self._root is not None:
            try:
                self._root.destroy()
            except Exception:  # already gone with the display: nothing left to release
                pass
            self._root = self._label = self._photo = None
        self._closed = True

    def __enter__(self) -> "Window":
        return self.open()

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ----------------------------------------------------------------- drawing
    def show(self, image: np.ndarray) -> None:
        """Display an RGB (or gray, or RGBA) uint8 image, scaled down if larger than the screen."""
        if self._closed or self._root is None:
            return
        image = _to_rgb(image)
        h, w = image.shape[:2]
        if self.fit_screen:
            s = min(1.0, self._max_size[0] / w, self._max_size[1] / h)
            if s < 1.0:
                w, h = max(1, int(w * s)), max(1, int(h * s))
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        # Binary PPM is the fastest way into a Tk photo (~3 ms for 640x480), no Pillow needed.
        ppm = b"P6 %d %d 255 " % (w, h) + np.ascontiguousarray(image).tobytes()
        import tkinter as tk

        if self._photo is None or self._size != (w, h):
            self._photo = tk.PhotoImage(master=self._root, data=ppm, format="PPM")
            self._label.configure(image=self._photo)
            self._size = (w, h)
        else:
            self._photo.configure(data=ppm, format="PPM")
        self._pump()

    # ----------------------------------------------------------------- events
    def poll(self) -> str | None:
        """Process pending window events and return the oldest unread one (or None)."""
        if self._closed:
            return "closed"
        self._pump()
        return self._events.popleft() if self._events else None

    def wait(self, ms: int = 0) -> str | None:
        """Wait up to ``ms`` milliseconds for an event (``ms <= 0``: until one comes)."""
        deadline = None if ms <= 0 else time.monotonic() + ms / 1000
        while True:
            ev = self.poll()
            if ev is not None:
                return ev
            if deadline is not None and time.monotonic() >= deadline:
                return None
            # Short sleeps keep Ctrl+C (handled between Python bytecodes) responsive.
            time.sleep(0.01 if deadline is None else max(0.0, min(0.01, deadline - time.monotonic())))

    def _pump(self) -> None:
        if self._root is None:
            return
        import tkinter as tk

        try:
            self._root.update()
        except tk.TclError:  # the display went away: behave as if the window was closed
            self._on_close()

    def _on_key(self, event) -> None:
        key = event.keysym
        ctrl_c = key in ("c", "C") and event.state & 0x4  # Control held
        self._events.append("quit" if key in QUIT_KEYS or ctrl_c else key)

    def _on_close(self) -> None:
        self.close()
        self._events.append("closed")


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return image[..., :3]
    return image


def draw_hud(image: np.ndarray, fps: float, model_ms: float, dropped: int | None) -> np.ndarray:
    """The live display's corner: frames per second, model time, frames a live source dropped."""
    text = f"{fps:5.1f} fps  model {model_ms:5.1f} ms"
    if dropped is not None:
        text += f"  dropped {dropped}"
    out = image.copy()
    scale = max(0.45, image.shape[0] / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, text, (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class WindowSink(Sink):
    """Shows the newest annotated frame in ``window`` with the HUD above.

    Frames are drawn on the writer thread (``write``) and shown by ``poll`` on the main thread,
    between frames, as Tk requires; poll turns q/Esc or a closed window into a reason to stop.
    The window belongs to whoever opened it (closing the sink leaves it open)."""

    def __init__(self, window: Window, render):
        self.window, self.render = window, render
        self.latest: np.ndarray | None = None
        self._shown: np.ndarray | None = None
        self._run = None

    def open(self, run) -> None:
        self._run = run

    def write(self, frame, seg) -> list:
        self.latest = self.render(frame, seg)
        return []

    def poll(self) -> str | None:
        vis = self.latest
        if vis is not None and vis is not self._shown and self._run is not None:
            stats, source = self._run.stats, self._run.source
            t0 = time.perf_counter()
            self.window.show(draw_hud(vis, stats.recent_fps(), stats.model_ms_recent,
                                      source.dropped if source.live else None))
            stats.show_s += time.perf_counter() - t0
            self._shown = vis
        return {"quit": "quit key", "closed": "window closed"}.get(self.window.poll())
