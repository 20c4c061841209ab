#!/usr/bin/env python3
"""`segkit gif`: frames (+ segmented) -> GIF / MP4 collage. The code is lib/segkit/commands/gif.py."""
from _launch import launch

launch("gif")
