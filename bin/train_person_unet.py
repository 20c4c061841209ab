#!/usr/bin/env python3
"""`segkit train`: train / fine-tune a person (or any class) model. The code is lib/segkit/commands/train.py."""
from _launch import launch

launch("train")
