"""Where frames come from and where results go: sources, sinks, video read/write, frame folders."""
