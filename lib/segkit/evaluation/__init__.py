"""How good is a model: COCO box/mask AP for instance models, IoU / precision / recall for
semantic (per-class mask) models, on a COCO annotation file or an images/ + masks/ folder.

- ``coco``: the COCO files (annotations, results) and the ground truth they give per class;
- ``ap``: box and mask AP with pycocotools' ``COCOeval`` (no re-implementation to drift from
  the official numbers), per class too;
- ``pixels``: pixel counts (``PixelCounts``: pooled and per-image IoU, precision, recall) and
  the three person figures (``PersonFigures``), from masks or a results file;
- ``predict``: a model run over a COCO set or a mask folder, into results or pixel counts;
- ``scope``: which images are scored (what a results file or an image folder covers) and how
  (AP or IoU);
- ``run``: ``evaluate(Options) -> Report``, the whole of ``segkit evaluate`` but its flags;
- ``report``: the text tables.
"""
