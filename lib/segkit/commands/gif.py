#!/usr/bin/env python3
"""Turn a folder of frames into an animated GIF or an MP4, optionally as a side-by-side collage
(original | mask | cut-out) of segment_folder.py's results."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from segkit import cli
from segkit.errors import UsageError
from segkit.io.animation import OUTPUT_EXTS, write_animation
from segkit.io.collage import DEFAULT_FPS, collage_frames, list_frames, parse_bytes, parse_layout, parse_resize

EPILOG = f"""examples:
  segkit gif -i frames/ -o clip.gif                       # fps from frames/manifest.json
  segkit gif -i frames/ -o clip.mp4 --fps 12 --resize 320x
  segkit gif -i frames/ --segmented seg/ --collage original,mask,cutout -o collage.gif --max-size 2M
  (bin/frames_to_gif.py is the same command, with the same options)

panels (--collage, left to right, each at frame size):
  original  the frames of -i
  mask      white-on-black mask: union of seg/NAME_masks/*.png (segment with --save-masks),
            else the alpha of a transparent cut-out seg/NAME.png thresholded at 128
  cutout    seg/NAME.png (the cut-out or overlay); transparency is shown on white

--resize sizes each panel (each frame), so --resize 480 on a 3-panel collage gives three
panels 480 px on their longest side, side by side (1440 px wide). --skip N keeps one frame in N and divides the fps
by N, so the animation lasts as long; --max-size (GIF only) skips more frames until it fits.
Without a manifest and without --fps, frames play at {DEFAULT_FPS:g} fps.

exit codes: 0 written, 1 unusable frames (named on stderr), 2 bad arguments, 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("frames_to_gif.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, metavar="DIR",
                   help="frames folder (video_to_frames.py output; its manifest.json gives order and fps)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output .gif or .mp4")
    p.add_argument("--segmented", metavar="DIR", help="segment_folder.py output for the mask/cutout panels")
    p.add_argument("--collage", default="original", metavar="PANELS",
                   help="comma-separated panels: original, mask, cutout (default: original)")
    p.add_argument("--fps", type=float, metavar="F", help=f"playback rate (default: the manifest's, else {DEFAULT_FPS:g})")
    p.add_argument("--resize", metavar="SIZE", help="size of each frame (each collage panel): WxH, 320x, x240, 0.5, 50%% or longest side (480)")
    p.add_argument("--loop", type=int, default=0, metavar="N", help="GIF: 0 loops forever (default), N plays N times")
    p.add_argument("--skip", type=int, default=1, metavar="N", help="keep one frame in N (fps divided by N)")
    p.add_argument("--max-size", metavar="BYTES", help="GIF: skip more frames until the file is at most this big (500k, 2M)")
    p.add_argument("--colors", type=int, default=256, metavar="N",
                   help="GIF: colours per frame palette, 2..256 (fewer = smaller file; default 256)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    ext = out.suffix.lower()
    if ext not in OUTPUT_EXTS:
        raise UsageError(f"{out}: output must end in {' or '.join(OUTPUT_EXTS)}")
    if args.skip < 1:
        raise UsageError(f"--skip {args.skip}: must be >= 1")
    if args.loop < 0:
        raise UsageError(f"--loop {args.loop}: must be >= 0")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps {args.fps}: must be > 0")
    if not 2 <= args.colors <= 256:
        raise UsageError(f"--colors {args.colors}: must be 2..256")
    if args.max_size and ext != ".gif":
        raise UsageError("--max-size applies to GIF output only")
    layout = parse_layout(args.collage)
    resize = parse_resize(args.resize) if args.resize else None
    max_bytes = parse_bytes(args.max_size) if args.max_size else None

    seq = list_frames(args.input)
    seg_dir = Path(args.segmented) if args.segmented else None
    if any(p.resolve() == out.resolve() for _, p in seq.items):
        raise UsageError(f"{out}: output would overwrite an input frame; choose another -o")
    fps = (args.fps or seq.fps or DEFAULT_FPS) / args.skip

    if ext == ".gif" and fps > 50:
        print(f"frames_to_gif: note: {fps:.3g} fps is faster than GIF players show (20 ms a frame at "
              "best; shorter delays play at 100 ms): consider --skip", file=sys.stderr)
    t0 = time.perf_counter()
    res = write_animation(collage_frames(seq, layout, seg_dir, resize, step=args.skip), out, fps, loop=args.loop,
                          step=args.skip, max_bytes=max_bytes, colors=args.colors)
    if not args.quiet:
        kept = f", 1 in {res.step} frames" if res.step > 1 else ""
        print(f"frames_to_gif: {res.path}: {res.frames} frames {res.width}x{res.height} at {res.fps:.3g} fps"
              f"{kept}, {res.bytes / 1024:.0f} KiB in {time.perf_counter() - t0:.1f} s")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
