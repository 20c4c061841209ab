#!/usr/bin/env python3
"""`segkit fetch`: list, download and verify zoo models. The code is lib/segkit/commands/fetch.py."""
from _launch import launch

launch("fetch")
