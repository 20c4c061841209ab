#!/usr/bin/env python3
"""`segkit serve`: an HTTP API and a web page over the models. The code is lib/segkit/commands/serve.py."""
from _launch import launch

launch("serve")
