"""segkit: image segmentation from the command line.

Importing segkit imports neither TensorFlow nor OpenCV's heavier users: adapters import their
framework lazily so the TFLite person path starts in well under a second.
"""
__version__ = "0.1.0"
