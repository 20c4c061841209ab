#!/usr/bin/env python3
"""`segkit frames`: video -> numbered frames + manifest.json. The code is lib/segkit/commands/frames.py."""
from _launch import launch

launch("frames")
