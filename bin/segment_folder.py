#!/usr/bin/env python3
"""`segkit folder`: segment every image of a folder (resumable). The code is lib/segkit/commands/folder.py."""
from _launch import launch

launch("folder")
