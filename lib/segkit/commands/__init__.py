"""The `segkit` command: one subcommand per bin/ script, each the same main() the script calls.

    segkit image -i photo.jpg        == bin/segment_image.py -i photo.jpg
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

# subcommand -> (module in segkit.commands, bin/ script, one-line summary)
COMMANDS = {
    "image": ("image", "segment_image.py", "segment photos: overlay, cut-out, masks, COCO JSON"),
    "folder": ("folder", "segment_folder.py", "segment every image of a folder (resumable)"),
    "webcam": ("webcam", "segment_webcam.py", "camera, video file or stream, live"),
    "evaluate": ("evaluate", "evaluate.py", "score a model or a results file (AP or IoU)"),
    "train": ("train", "train_person_unet.py", "train / fine-tune a person (or any class) model"),
    "frames": ("frames", "video_to_frames.py", "video -> numbered frames + manifest.json"),
    "gif": ("gif", "frames_to_gif.py", "frames (+ segmented) -> GIF / MP4 collage"),
    "fetch": ("fetch", "fetch_model.py", "list, download and verify zoo models"),
    "soup": ("soup", "soup_models.py", "average fine-tuning runs into one model"),
    "convert": ("convert", "convert_yolo.py", "convert a YOLO-seg .pt to TFLite ahead of first use"),
    "serve": ("serve", "serve.py", "HTTP API and web page: upload a photo, get the cut-out"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<9} {summary}" for name, (_, _, summary) in COMMANDS.items())
    return (f"usage: segkit COMMAND [options]   (segkit COMMAND --help for its options)\n\n"
            f"commands:\n{rows}\n")


def run(name: str, argv: list[str] | None = None) -> int:
    """Run one subcommand's main() with the usual error/exit-code handling."""
    # Ctrl+C while the modules load (cli's YAML, numpy, OpenCV ...): a KeyboardInterrupt raised
    # inside an import is a traceback (or an ImportError one), so end here with one line instead.
    # SIGTERM too: nothing is written yet, so one line and its exit code (run_main takes over after)
    main_thread = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = {sig: signal.signal(sig, _interrupted_while_loading) for sig in (signal.SIGINT, signal.SIGTERM)
                } if main_thread else {}
    try:
        from segkit import cli

        cli.quiet_frameworks("--verbose" in (sys.argv[1:] if argv is None else argv))
        module = importlib.import_module(f"segkit.commands.{COMMANDS[name][0]}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return cli.run_main(module.main, argv)


def _interrupted_while_loading(signum, frame):
    term = signum == signal.SIGTERM
    print(f"segkit: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr, flush=True)
    os._exit(143 if term else 130)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import PackageNotFoundError, version
        try:
            print(f"segkit {version('segkit')}")
        except PackageNotFoundError:
            print("segkit (not installed)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(usage(), end="", file=sys.stderr)
        print(f"segkit: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    from segkit import cli

    cli.INVOKED_AS = f"segkit {name}"
    return run(name, rest)


def exit_after(code: int):
    """End a command-line process with ``code``. Its work is done and its outputs are written, so
    a Ctrl+C or SIGTERM that lands while Python shuts down (joining worker threads, atexit) is ignored:
    otherwise Python prints an "Exception ignored ... KeyboardInterrupt" traceback after the
    run's own summary line."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # likewise: Python would die of it silently (-15)
    sys.exit(code)


def console() -> None:
    """The installed `segkit` command (and ``python -m segkit``)."""
    exit_after(main())


if __name__ == "__main__":
    console()
