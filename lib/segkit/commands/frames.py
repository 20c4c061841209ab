#!/usr/bin/env python3
"""Extract frames of a video as numbered images plus manifest.json (index, source frame, time, file)."""
from __future__ import annotations

import argparse
import sys
import time

from segkit import cli
from segkit.io.frames import MANIFEST_NAME, Selection, extract_frames, parse_time, truncation_note

EPILOG = """examples:
  segkit frames -i video.mp4 -o frames/                    # every frame, PNG
  segkit frames -i video.mp4 -o frames/ --every 4 --max-frames 30
  segkit frames -i video.mp4 -o frames/ --fps 5 --start 0:10 --end 0:20 --ext jpg
  (bin/video_to_frames.py is the same command, with the same options)

Frames are named frame_000000.png, frame_000001.png ... (they sort in playing order).
frames/manifest.json records for each: index, source_frame, timestamp (s) and file, plus the
playback fps that keeps real time (segkit gif reads it). --end is exclusive.

A run cut short (killed, disk full) leaves frames but no manifest: run the same command again.

exit codes: 0 done, 1 unusable video, no frame selected or an output cannot be written,
            2 bad arguments, 3 the video ended before the frame count its container promises
            (truncated or corrupt: the frames read are written), 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("video_to_frames.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, metavar="VIDEO", help="video file (mp4, avi, mov ...)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the frames and manifest.json")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--every", type=int, metavar="N", help="keep every Nth frame")
    rate.add_argument("--fps", type=float, metavar="F", help="resample to F frames per second")
    p.add_argument("--start", type=_time, default=0.0, metavar="T",
                   help="first time to keep: seconds (12.5) or [HH:]MM:SS[.f] (default 0)")
    p.add_argument("--end", type=_time, metavar="T", help="stop before this time (exclusive)")
    p.add_argument("--max-frames", type=int, metavar="N", help="write at most N frames")
    p.add_argument("--ext", default="png", choices=["png", "jpg"], help="frame image format (default png)")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse an output folder holding frames of an earlier run (its stale frames are removed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_verbose_arg(p)
    return p


def _time(text: str) -> float:
    from segkit.errors import UsageError

    try:
        return parse_time(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sel = Selection(every=args.every, fps=args.fps, start=args.start, end=args.end,
                    max_frames=args.max_frames)
    from tqdm import tqdm

    t0 = time.perf_counter()
    # disable=None: a bar on a terminal, nothing in logs/pipes
    with tqdm(desc="frames", unit="frame", disable=True if args.quiet else None) as bar:
        def set_total(n):
            bar.total = n
            bar.refresh()

        manifest = extract_frames(args.input, args.output, sel, ext=args.ext, overwrite=args.overwrite,
                                  on_frame=lambda rec: bar.update(1), set_total=set_total)
    secs = time.perf_counter() - t0
    fps = f"{manifest.fps:.3g} fps" if manifest.fps else "fps unknown"
    print(f"video_to_frames: {len(manifest.frames)} frames ({manifest.width}x{manifest.height}, {fps}) "
          f"-> {args.output} + {MANIFEST_NAME} in {secs:.1f} s")
    note = truncation_note(manifest)
    if note:
        cli.error(note)
        return cli.EXIT_SOME_FAILED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
