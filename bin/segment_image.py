#!/usr/bin/env python3
"""`segkit image`: segment photos: overlay, cut-out, masks, COCO JSON. The code is lib/segkit/commands/image.py."""
from _launch import launch

launch("image")
