#!/usr/bin/env python3
"""`segkit soup`: average fine-tuning runs into one model. The code is lib/segkit/commands/soup.py."""
from _launch import launch

launch("soup")
