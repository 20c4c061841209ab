#!/usr/bin/env python3
"""Segment every image of a folder (tree): resumable, safe to kill, failures recorded, not fatal."""
from __future__ import annotations

import argparse
import sys

from segkit import cli
from segkit.config import parse_args
from segkit.folder_run import segment_folder

EPILOG = """examples:
  segkit folder -i images/ -o segmented_images/                 # person model, overlays
  segkit folder -i images/ --recursive --pattern '*.jpg' --background white --save-masks
  segkit folder -i 'images/*.jpg' --model yolov5s_seg_coco --classes person,elephant --json
  segkit folder -i val2017/ --json --coco-annotations instances_val2017.json   # a COCO folder
  segkit folder -i frames/ --track --model yolov5s_seg_coco --save-txt --json   # a video's frames
  segkit folder -i frames/ --track --model yolov5s_seg_coco --classes person --save-mots tracks.txt --per-track clips/
  (bin/segment_folder.py is the same command, with the same options)

Run it again to finish an interrupted run: complete outputs are skipped (--overwrite redoes them).
Outputs made with other settings (another model, other classes, threshold or background) do not
count as complete: they are redone, and one line says which settings changed.
Files that cannot be read are listed in OUT/failures.jsonl and the run goes on.

exit codes: 0 all images done (or already done), 1 none could be done (or a fatal error),
            2 bad arguments, 3 some images failed (see failures.jsonl), 130 interrupted (Ctrl+C),
            143 terminated (SIGTERM); both finish the files being written and write the results"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_folder.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", action="append", required=True, metavar="DIR|GLOB",
                   help="folder of images or glob ('shots/**/*.jpg'); repeat -i for more")
    p.add_argument("-r", "--recursive", action="store_true", help="also take images in sub-folders")
    p.add_argument("--pattern", action="append", metavar="GLOB",
                   help="only file names matching GLOB ('*.jpg'); repeat for more")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    cli.add_output_args(p, json_help="write one COCO results JSON (RLE masks, loadable by COCO.loadRes) "
                                     "for the whole folder; default name results.json in the output folder")
    cli.add_track_output_args(p)
    g = p.add_argument_group("folder runs")
    g.add_argument("--track", action="store_true",
                   help="-i is one video's frames (a folder in name order, or a printf pattern such as "
                        "frames/%%05d.jpg): follow objects across them, each keeping one id in every "
                        "output; a killed run, run again, gives the same ids")
    g.add_argument("--coco-annotations", metavar="JSON",
                   help="COCO annotation file whose image ids (matched by file_name) the results JSON uses; "
                        "default: the file stem when it is a number")
    g.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads decoding and threads encoding beside the model (default 2)")
    g.add_argument("--quiet", action="store_true", help="no progress bar; print only failures and the summary")
    g.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="local: threads on this machine (default); beam: an Apache Beam pipeline "
                        "(RunInference), DirectRunner unless --beam-options names another")
    g.add_argument("--beam-options", metavar="'FLAGS'",
                   help="Beam pipeline options, passed through: '--runner=DataflowRunner --project=P "
                        "--region=R --temp_location=gs://B/tmp' (see README)")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.runner == "beam" and args.track:
        raise cli.UsageError("--track needs the frames in order on one machine: use --runner local")
    if args.runner == "beam":
        from segkit.beam_runner import run_folder
        stats, model = run_folder(args)
    else:
        stats, model = segment_folder(args)
    model = f"; model {model}" if model else ""
    print(f"segment_folder: {stats.summary()}{model}", file=sys.stderr if args.quiet else sys.stdout)
    return stats.exit_code()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
