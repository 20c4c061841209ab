"""segkit: image segmentation from the command line, and from Python::

    import segkit
    model = segkit.load_model("person_selfie_coco")   # zoo name, or a checkpoint path
    seg = model("images/000000519208.jpg")            # or an RGB uint8 array -> Segmentation
    seg.plot(segkit.read_image(path)); seg.to_coco(image_id=1); seg.to_yolo_txt()

Importing segkit imports neither TensorFlow nor OpenCV's heavier users: the API below loads on
first use, and adapters import their framework lazily so the TFLite person path starts in well
under a second.
"""
__version__ = "0.1.0"
__all__ = ["load_model", "Model", "Segmentation", "read_image"]

_LAZY = {"load_model": "segkit.api", "Model": "segkit.api", "Segmentation": "segkit.segmentation",
         "read_image": "segkit.io.sources"}  # the scripts' decoder (EXIF orientation, 16-bit, alpha)


def __getattr__(name):  # PEP 562: `import segkit` stays cheap until the API is used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
