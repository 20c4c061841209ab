#!/usr/bin/env python3
"""Live segmentation of a camera, a video file or a network stream, shown in a window and/or
written to a video.

Capture (a thread), the model (the main thread), drawing (a thread) and video encoding (a
thread) overlap (segkit.stream_run). Live sources never build a backlog: when the model is slower than the camera, stale frames are dropped and the
newest one is segmented. The camera is released and --output is finalised on every way out
(q/Esc, closing the window, Ctrl+C, SIGTERM, the stream ending, an error).
"""
from __future__ import annotations

import argparse
import sys

from segkit import cli
from segkit.config import DEFAULTS, parse_args
from segkit.stream_run import segment_stream

EPILOG = """examples:
  segkit webcam                                   # camera 0, person model, window (q or Esc quits)
  segkit webcam --background blur --mirror        # video-call style blurred background
  segkit webcam --background images/000000183709.jpg --output call.mp4
  segkit webcam --source clip.mp4 --output clip_seg.mp4        # every frame of a video file
  segkit webcam --source rtsp://192.168.1.20/stream --duration 60 --output cam.mp4
  segkit webcam --source frames/ --model yolov5s_seg_coco --track --output tracked.mp4
  segkit webcam --source clip.mp4 --model yolov5s_seg_coco --classes person --track \
      --save-mots clip_mots.txt --per-track clips/                   # MOTS file, one clip per person
  (bin/segment_webcam.py is the same command, with the same options)

exit codes: 0 done (q, window closed, end of stream, --max-frames/--duration reached),
            1 error (camera cannot be opened, model failed; --output is still finalised),
            2 bad arguments, 130 Ctrl+C, 143 SIGTERM (--output finalised in both cases)"""



def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_webcam.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("source")
    g.add_argument("--source", default="0", metavar="SRC",
                   help="camera index (default 0), video file, stream URL (rtsp://, http://, ... "
                        "whatever OpenCV's FFmpeg opens), a folder of frames (name order) or a "
                        "printf pattern such as frames/%%05d.jpg")
    g.add_argument("--realtime", action="store_true",
                   help="play a file at its own frame rate and drop frames the model cannot keep up "
                        "with, as for a camera (default for files: process every frame)")
    g.add_argument("--mirror", action="store_true", help="flip frames left-right (selfie view)")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    cli.add_track_arg(p)
    cli.add_track_output_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument("--background", metavar="BG",
                   help="replace everything but the selected classes: white, blur[:SIGMA], a colour "
                        "(name, #rrggbb, r,g,b) or an image file (default: coloured overlay)")
    g.add_argument("--alpha", type=cli._fraction, help=f"overlay opacity 0..1 (default {DEFAULTS['alpha']})")
    cli.add_refine_edges_arg(g)
    # dest differs from 'output' on purpose: defaults.yaml's output is the image folder.
    g.add_argument("-o", "--output", dest="video_output", metavar="VIDEO",
                   help="write the annotated stream to this video (.mp4/.mov/.mkv: H.264 that browsers play, "
                        "MPEG-4 Part 2 without imageio-ffmpeg; .avi: MJPEG); "
                        "written to a temp file and renamed into place when the run ends")
    g.add_argument("--no-show", action="store_true", help="never open a window, even with a display")
    g = p.add_argument_group("run length")
    g.add_argument("--max-frames", type=cli.positive_int, metavar="N", help="stop after N segmented frames")
    g.add_argument("--duration", type=cli.positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return segment_stream(parse_args(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
