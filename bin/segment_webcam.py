#!/usr/bin/env python3
"""`segkit webcam`: camera, video file or stream, live. The code is lib/segkit/commands/webcam.py."""
from _launch import launch

launch("webcam")
