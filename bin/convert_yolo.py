#!/usr/bin/env python3
"""`segkit convert`: convert a YOLOv5-seg / YOLOv7-seg .pt to TFLite without PyTorch. The code is lib/segkit/commands/convert.py."""
from _launch import launch

launch("convert")
