#!/usr/bin/env python3
"""`segkit evaluate`: score a model or a results file (AP or IoU). The code is lib/segkit/commands/evaluate.py."""
from _launch import launch

launch("evaluate")
