"""What a training run is asked to do: ``TrainConfig``, and the checks that fail fast on bad
input (missing files, impossible options, absent pretrained weights) before TensorFlow loads."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    output: Path                                   # export folder, e.g. model_zoo/person_unet
    coco: list = field(default_factory=list)       # [(annotation json, image dir)]
    folders: list = field(default_factory=list)    # [images/+masks/ root]
    val_coco: list = field(default_factory=list)
    val_folders: list = field(default_factory=list)
    val_split: float | None = None                 # None: 0.1 unless a validation source is given
    category: str = "person"
    include_negatives: bool = False
    small_weight: float | None = None              # largest loss weight of small instances' pixels
    hard_negatives: float | None = None            # fraction of background pixels mined (OHEM term)
    num_classes: int = 2                           # including background; 2 = binary (sigmoid)
    class_names: list | None = None
    encoder: str = "mobilenetv2"
    encoder_weights: str | None = None
    image_size: int = 256
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "jaccard+ce"
    augment: bool = True
    patience: int = 8                              # early stopping (epochs without val IoU gain)
    lr_patience: int = 3                           # ReduceLROnPlateau (epochs without val loss gain)
    ema: float | None = None                       # weight EMA momentum (validate/export the average)
    max_images: int | None = None                  # cap on training images (smoke runs)
    run_dir: Path | None = None
    resume: bool = False
    seed: int = 0
    export: bool = True
    tflite: bool = True
    verbose: int = 2
    strategy: str = "default"                      # tf.distribute: default/mirrored/multiworker

    def resolved_class_names(self) -> list[str]:
        if self.class_names:
            if len(self.class_names) != self.channels:
                raise ValueError(f"--class-names has {len(self.class_names)} names but the model "
                                 f"has {self.channels} output channels")
            return list(self.class_names)
        if self.num_classes <= 2:
            return [self.category]
        return ["background"] + [f"class{i}" for i in range(1, self.num_classes)]

    @property
    def channels(self) -> int:
        return 1 if self.num_classes <= 2 else self.num_classes

    @classmethod
    def from_args(cls, args) -> TrainConfig:
        """The configuration ``segkit train``'s flags ask for (paired flags checked, COCO roots
        resolved to their annotation file and image folder)."""
        if len(args.coco_ann) != len(args.coco_images):
            raise ValueError("give --coco-ann and --coco-images the same number of times")
        if len(args.val_coco_ann) != len(args.val_coco_images):
            raise ValueError("give --val-coco-ann and --val-coco-images the same number of times")
        coco = [coco_paths(r, args.coco_split) for r in args.coco_root]
        coco += [(Path(a), Path(i)) for a, i in zip(args.coco_ann, args.coco_images)]
        names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
        return cls(
            output=Path(args.output), coco=coco, folders=[Path(f) for f in args.folder],
            val_coco=[coco_paths(r, "val2017") for r in args.val_coco_root]
            + [(Path(a), Path(i)) for a, i in zip(args.val_coco_ann, args.val_coco_images)],
            val_folders=[Path(f) for f in args.val_folder], val_split=args.val_split,
            category=args.category, include_negatives=args.include_negatives,
            small_weight=args.small_weight, hard_negatives=args.hard_negatives,
            num_classes=args.num_classes, class_names=names, encoder=args.encoder,
            encoder_weights=default_weights(args.encoder, args.encoder_weights),
            image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            loss=args.loss, augment=not args.no_augment, patience=args.patience,
            lr_patience=args.lr_patience, ema=args.ema, max_images=args.max_images,
            run_dir=Path(args.run_dir) if args.run_dir else None, resume=args.resume,
            seed=args.seed, tflite=not args.no_tflite, verbose=0 if args.quiet else 2,
            strategy=args.strategy)


def default_weights(encoder: str, weights: str | None) -> str | None:
    """--encoder-weights as TrainConfig takes it: None = from scratch; the selfie encoder starts
    from the bundled MediaPipe model unless told otherwise."""
    if weights is None:
        return "mediapipe" if encoder == "selfie" else None
    return None if weights == "none" else weights


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a standard COCO layout."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: COCO root folder not found")
    ann = root / "annotations" / f"instances_{split}.json"
    if not ann.is_file():
        raise ValueError(f"{root}: no annotations/instances_{split}.json inside")
    images = root / split
    if not images.is_dir():
        raise ValueError(f"{root}: no {split}/ image folder inside")
    return ann, images


def imagenet_weights_file(encoder: str, input_size: int) -> str:
    """File name keras.applications looks up in its cache (~/.keras/models/) for no-top weights."""
    if encoder == "mobilenetv2":
        rows = input_size if input_size in (96, 128, 160, 192, 224) else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    if encoder == "vgg16":
        return "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    raise ValueError(f"encoder {encoder!r} has no pretrained weights (use --encoder-weights none)")


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps downloads: $KERAS_HOME or ~/.keras (as Keras decides)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


#: The zoo model the ``selfie`` encoder starts from (bundled, Apache-2.0).
SELFIE_MODEL = "selfie_segmentation"


def check_encoder_weights(encoder: str, input_size: int, weights: str | None) -> str | None:
    """The weights file to load (None: from scratch). ImageNet weights are taken only from Keras'
    download cache: nothing can be downloaded here, so a missing file fails fast. The ``selfie``
    encoder takes ``mediapipe`` (the bundled selfie model) or a .tflite file instead."""
    if weights in (None, "none", ""):
        return None
    if encoder == "selfie":
        if weights == "imagenet":
            raise ValueError("the selfie encoder has no ImageNet weights (use --encoder-weights "
                             "mediapipe, none, or a selfie-style .tflite file)")
        if weights == "mediapipe":
            from segkit import zoo

            return str(zoo.resolve(zoo.load_registry().get(SELFIE_MODEL), progress=False))
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"--encoder-weights {weights}: {path} not found")
        return str(path)
    if weights == "mediapipe":
        raise ValueError(f"--encoder-weights mediapipe is only for --encoder selfie, not {encoder}")
    if weights != "imagenet":
        if encoder == "shallow":
            imagenet_weights_file(encoder, input_size)  # raises: no pretrained weights
        if not Path(weights).is_file():
            raise ValueError(f"--encoder-weights {weights}: no such file")
        return str(weights)
    path = keras_cache_dir() / "models" / imagenet_weights_file(encoder, input_size)
    if not path.is_file():
        raise ValueError(f"ImageNet weights for {encoder} not found at {path} and cannot be "
                         "downloaded here; copy the file there or train from scratch "
                         "(--encoder-weights none)")
    return str(path)


def check_inputs(cfg: TrainConfig) -> None:
    """Fail on missing files before TensorFlow is imported (a fast, one-line error)."""
    for ann, images in [*cfg.coco, *cfg.val_coco]:
        if not Path(ann).is_file():
            raise ValueError(f"{ann}: COCO annotation file not found")
        if not Path(images).is_dir():
            raise ValueError(f"{images}: COCO image folder not found")
    for root in [*cfg.folders, *cfg.val_folders]:
        if not (Path(root) / "images").is_dir() or not (Path(root) / "masks").is_dir():
            raise ValueError(f"{root}: expected images/ and masks/ folders inside")
    if not (cfg.coco or cfg.folders):
        raise ValueError("no training data: give --coco-root, --coco-ann/--coco-images or --folder")
    if cfg.num_classes < 2:
        raise ValueError(f"--num-classes {cfg.num_classes}: need at least 2 (background + one)")
    if cfg.num_classes > 2 and (cfg.coco or cfg.val_coco):
        raise ValueError("--num-classes > 2 needs folder masks (COCO sources give binary masks)")
    if cfg.ema is not None and not 0 < cfg.ema < 1:
        raise ValueError(f"--ema {cfg.ema}: the averaging momentum must be between 0 and 1")
    if cfg.hard_negatives is not None and not 0 < cfg.hard_negatives <= 1:
        raise ValueError(f"--hard-negatives {cfg.hard_negatives}: a fraction of pixels in (0, 1]")
    if cfg.small_weight is not None and cfg.small_weight < 1:
        raise ValueError(f"--small-weight {cfg.small_weight}: the largest weight, at least 1")
    if (cfg.small_weight or cfg.hard_negatives) and cfg.num_classes > 2:
        raise ValueError("--small-weight and --hard-negatives are for binary (COCO category) models")
    if cfg.image_size < 32:
        raise ValueError(f"--image-size {cfg.image_size}: too small (at least 32)")
    check_encoder_weights(cfg.encoder, cfg.image_size, cfg.encoder_weights)
    cfg.resolved_class_names()
    from segkit.train.distribute import check_strategy

    check_strategy(cfg.strategy)

