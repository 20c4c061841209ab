"""Rebuild a YOLOv5-seg / YOLOv7-seg network in Keras from its checkpoint (no PyTorch).

The topology comes from the checkpoint's own architecture description (the ``yaml`` dict on the
model: ``[from, repeats, module, args]`` rows, as YOLO's ``parse_model`` reads it); each layer's
geometry (kernel, stride, padding, groups, shortcut, pooling) and weights come from the pickled
module of that row, i.e. exactly what the PyTorch forward uses. As in YOLOv5's own TensorFlow port
(``models/tf.py``): NHWC, BatchNorm folded into the convolution (here in float64, from the fp16
weights), PyTorch's symmetric padding written as explicit ZeroPadding2D where TF 'same' would pad
differently (stride 2), and the detection grid rebuilt for the requested input size.

Output of the Keras model, like the PyTorch model in eval mode:
  pred   [B, N, 5+nc+nm]  xywh (input pixels), objectness, nc class scores (sigmoid applied to the
                          first 5+nc channels only), nm raw mask coefficients
  protos [B, imgsz/4, imgsz/4, nm]  (PyTorch gives NCHW; here NHWC)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.models.yolo_checkpoint import Checkpoint, CheckpointError, Record

#: yaml module names this rebuild implements (anything else is refused by name)
SUPPORTED_MODULES = ("Conv", "C3", "SPPF", "SPPCSPC", "MP", "nn.Upsample", "Concat",
                     "Segment", "ISegment")


def _np(a) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected a tensor, got {type(a).__name__}")
    return a


class _Builder:
    def __init__(self, ck: Checkpoint, imgsz: int):
        import keras

        self.keras, self.ck, self.imgsz = keras, ck, int(imgsz)
        self.path = ck.path

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(self.path, problem)

    # ------------------------------------------------------------------ layers
    def conv(self, rec: Record, x, name: str):
        """models.common.Conv (Conv2d + BatchNorm2d + SiLU) or a bare nn.Conv2d with bias."""
        keras = self.keras
        if rec.name == "Conv2d":
            conv, bn, act = rec, None, None
        else:
            ch = rec.children
            conv, bn, act = ch.get("conv"), ch.get("bn"), ch.get("act")
        if conv is None or conv.name != "Conv2d":
            raise self.fail(f"layer {name}: expected a Conv2d, found {conv!r}")
        w = _np(conv.param("weight")).astype(np.float64)  # (out, in/g, kh, kw)
        b = conv.param("bias")
        b = np.zeros(w.shape[0]) if b is None else _np(b).astype(np.float64)
        if bn is not None:
            gamma = _np(bn.param("weight")).astype(np.float64)
            beta = _np(bn.param("bias")).astype(np.float64)
            mean = _np(bn.param("running_mean")).astype(np.float64)
            var = _np(bn.param("running_var")).astype(np.float64)
            scale = gamma / np.sqrt(var + float(bn.eps))
            w = w * scale[:, None, None, None]
            b = (b - mean) * scale + beta
        kh, kw = (int(v) for v in conv.kernel_size)
        sh, sw = (int(v) for v in conv.stride)
        ph, pw = (int(v) for v in conv.padding)
        groups = int(conv.groups)
        if tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
            raise self.fail(f"layer {name}: dilated or non-zero-padded convolutions are not supported")
        same = (sh, sw) == (1, 1) and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2) and kh % 2 and kw % 2
        if not same and (ph or pw):
            x = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=f"{name}_pad")(x)
        layer = keras.layers.Conv2D(w.shape[0], (kh, kw), strides=(sh, sw),
                                    padding="same" if same else "valid", groups=groups,
                                    use_bias=True, name=name)
        layer.build(tuple(x.shape))
        layer.set_weights([w.transpose(2, 3, 1, 0).astype(np.float32), b.astype(np.float32)])
        x = layer(x)
        if act is not None:
            if act.name == "SiLU":
                x = keras.layers.Activation("silu", name=f"{name}_silu")(x)
            elif act.name != "Identity":
                raise self.fail(f"layer {name}: activation {act.name} is not supported")
        return x

    def maxpool(self, rec: Record, x, name: str):
        keras = self.keras
        k, s, p = (int(v if not isinstance(v, (tuple, list)) else v[0])
                   for v in (rec.kernel_size, rec.stride, rec.padding))
        if getattr(rec, "ceil_mode", False) or int(getattr(rec, "dilation", 1) or 1) != 1:
            raise self.fail(f"layer {name}: ceil_mode/dilated max pooling is not supported")
        if s == 1 and p == k // 2 and k % 2:
            # PyTorch pads with -inf; TF 'same' pooling ignores the padding: identical
            return keras.layers.MaxPooling2D(k, 1, padding="same", name=name)(x)
        if p == 0:
            return keras.layers.MaxPooling2D(k, s, padding="valid", name=name)(x)
        raise self.fail(f"layer {name}: max pooling k={k} s={s} p={p} is not supported")

    def upsample(self, rec: Record, x, name: str):
        mode = getattr(rec, "mode", "nearest")
        scale = getattr(rec, "scale_factor", None)
        if mode != "nearest" or scale is None:
            raise self.fail(f"layer {name}: upsampling mode={mode} scale={scale} is not supported")
        s = int(scale if not isinstance(scale, (tuple, list)) else scale[0])
        if s != 2 or float(scale if not isinstance(scale, (tuple, list)) else scale[0]) != 2.0:
            raise self.fail(f"layer {name}: upsampling by {scale} is not supported (only 2)")
        return _layer_classes()[2](name=name)(x)

    def c3(self, rec: Record, x, name: str):
        ch = rec.children
        a = self.conv(ch["cv1"], x, f"{name}_cv1")
        for j, bott in enumerate(ch["m"].children.values()):
            h = self.conv(bott.children["cv1"], a, f"{name}_m{j}_cv1")
            h = self.conv(bott.children["cv2"], h, f"{name}_m{j}_cv2")
            a = self.keras.layers.Add(name=f"{name}_m{j}_add")([a, h]) if bott.add else h
        b = self.conv(ch["cv2"], x, f"{name}_cv2")
        cat = self.keras.layers.Concatenate(axis=-1, name=f"{name}_cat")([a, b])
        return self.conv(ch["cv3"], cat, f"{name}_cv3")

    def sppf(self, rec: Record, x, name: str):
        ch = rec.children
        x = self.conv(ch["cv1"], x, f"{name}_cv1")
        y1 = self.maxpool(ch["m"], x, f"{name}_pool1")
        y2 = self.maxpool(ch["m"], y1, f"{name}_pool2")
        y3 = self.maxpool(ch["m"], y2, f"{name}_pool3")
        cat = self.keras.layers.Concatenate(axis=-1, name=f"{name}_cat")([x, y1, y2, y3])
        return self.conv(ch["cv2"], cat, f"{name}_cv2")

    def sppcspc(self, rec: Record, x, name: str):
        ch = rec.children
        x1 = self.conv(ch["cv1"], x, f"{name}_cv1")
        x1 = self.conv(ch["cv3"], x1, f"{name}_cv3")
        x1 = self.conv(ch["cv4"], x1, f"{name}_cv4")
        pools = [self.maxpool(m, x1, f"{name}_pool{j}") for j, m in enumerate(ch["m"].children.values())]
        y1 = self.keras.layers.Concatenate(axis=-1, name=f"{name}_cat1")([x1] + pools)
        y1 = self.conv(ch["cv5"], y1, f"{name}_cv5")
        y1 = self.conv(ch["cv6"], y1, f"{name}_cv6")
        y2 = self.conv(ch["cv2"], x, f"{name}_cv2")
        cat = self.keras.layers.Concatenate(axis=-1, name=f"{name}_cat2")([y1, y2])
        return self.conv(ch["cv7"], cat, f"{name}_cv7")

    def segment(self, rec: Record, xs: list, name: str):
        """Segment (YOLOv5) / ISegment (YOLOv7): Proto on the first input; per level an optional
        ImplicitA add (ISegment's forward is IDetect.forward: ia before the conv; its ImplicitM
        weights ``im`` are never applied), 1x1 conv, sigmoid on the first 5+nc channels, grid
        decode for this input size."""
        keras = self.keras
        ch = rec.children
        nc, nm, na, nl = int(rec.nc), int(rec.nm), int(rec.na), int(rec.nl)
        no = 5 + nc + nm
        if int(rec.no) != no or len(xs) != nl:
            raise self.fail(f"layer {name}: head has no={rec.no} outputs for nc={nc}, nm={nm}")
        stride = np.asarray(getattr(rec, "stride", None), dtype=np.float32).reshape(-1)
        anchors = _np(rec.param("anchors")).astype(np.float32).reshape(nl, na, 2)
        p = self.proto(ch["proto"], xs[0], f"{name}_proto")
        outs = []
        convs = list(ch["m"].children.values())
        implicit_a = list(ch["ia"].children.values()) if "ia" in ch else None
        for i in range(nl):
            x = xs[i]
            if implicit_a is not None:
                shift = _np(implicit_a[i].param("implicit")).astype(np.float32).reshape(1, 1, 1, -1)
                x = _AddConst(shift, name=f"{name}_ia{i}")(x)
            x = self.conv(convs[i], x, f"{name}_m{i}")
            ny, nx = int(x.shape[1]), int(x.shape[2])
            if ny * int(stride[i]) != self.imgsz or nx * int(stride[i]) != self.imgsz:
                raise self.fail(f"layer {name}: level {i} is {ny}x{nx} at input {self.imgsz} "
                                f"(stride {stride[i]})")
            # the grid PyTorch's Detect._make_grid builds for this size (stored ones are stale)
            yv, xv = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32),
                                 indexing="ij")
            grid = np.stack((xv, yv), -1) - np.float32(0.5)                     # (ny, nx, 2)
            grid = np.broadcast_to(grid, (na, ny, nx, 2)).reshape(1, -1, 2)
            anchor_grid = anchors[i] * stride[i]                                   # (na, 2)
            anchor_grid = np.broadcast_to(anchor_grid[:, None, None, :], (na, ny, nx, 2)).reshape(1, -1, 2)
            outs.append(_Decode(na, no, nc, float(stride[i]), grid, anchor_grid, name=f"{name}_decode{i}")(x))
        pred = keras.layers.Concatenate(axis=1, name="pred")(outs)
        return pred, p

    def proto(self, rec: Record, x, name: str):
        ch = rec.children
        x = self.conv(ch["cv1"], x, f"{name}_cv1")
        x = self.upsample(ch["upsample"], x, f"{name}_up")
        x = self.conv(ch["cv2"], x, f"{name}_cv2")
        return self.conv(ch["cv3"], x, f"{name}_cv3")

    # ------------------------------------------------------------------ the whole graph
    def build(self):
        keras = self.keras
        rows, layers = check_architecture(self.ck)
        if self.imgsz % 32 or self.imgsz <= 0:
            raise self.fail(f"input size {self.imgsz} is not a positive multiple of 32")
        inp = keras.Input((self.imgsz, self.imgsz, 3), name="images")
        x, outputs = inp, []
        for i, ((frm, _n, module, _args), rec) in enumerate(zip(rows, layers)):
            expected = module.replace("nn.", "")
            if rec.name != expected:
                raise self.fail(f"layer {i}: architecture says {module} but the model holds {rec.name}")
            if frm != -1:
                x = outputs[frm] if isinstance(frm, int) else [x if j == -1 else outputs[j] for j in frm]
            name = f"l{i}_{expected.lower()}"
            if module == "Conv":
                x = self.conv(rec, x, name)
            elif module == "C3":
                x = self.c3(rec, x, name)
            elif module == "SPPF":
                x = self.sppf(rec, x, name)
            elif module == "SPPCSPC":
                x = self.sppcspc(rec, x, name)
            elif module == "MP":
                x = self.maxpool(rec.children["m"], x, name)
            elif module == "nn.Upsample":
                x = self.upsample(rec, x, name)
            elif module == "Concat":
                if int(getattr(rec, "d", 1)) != 1:
                    raise self.fail(f"layer {i}: Concat along dimension {rec.d} is not supported")
                x = keras.layers.Concatenate(axis=-1, name=name)(x)
            elif module in ("Segment", "ISegment"):
                if i != len(rows) - 1:
                    raise self.fail(f"layer {i}: the {module} head must be the last layer")
                x = self.segment(rec, x, name)
            outputs.append(x)
        if not isinstance(x, tuple):
            raise self.fail("the architecture description ends without a Segment/ISegment head")
        pred, protos = x
        protos = keras.layers.Identity(name="protos")(protos)
        return keras.Model(inp, [pred, protos], name="yolo_seg")


def check_architecture(ck: Checkpoint) -> tuple[list, list]:
    """The architecture rows and the model's layers, after checking that every module the rows
    name is one this rebuild implements (no TensorFlow needed: hostile or unknown checkpoints
    are refused before anything heavy is loaded)."""
    cfg = ck.yaml
    rows = list(cfg.get("backbone") or []) + list(cfg.get("head") or [])
    if not rows:
        raise CheckpointError(ck.path, "architecture description ('yaml') has no backbone/head rows")
    for i, row in enumerate(rows):
        module = row[2] if isinstance(row, (list, tuple)) and len(row) == 4 else None
        if not isinstance(module, str) or module not in SUPPORTED_MODULES:
            shown = module if isinstance(module, str) else repr(row)[:60]
            raise CheckpointError(ck.path, f"unsupported module '{shown}' in layer {i} of the "
                                  f"architecture description (supported: {', '.join(SUPPORTED_MODULES)})")
    layers = list(ck.model.children.get("model", Record()).children.values())
    if len(rows) != len(layers):
        raise CheckpointError(ck.path, f"architecture description has {len(rows)} rows but the "
                              f"model holds {len(layers)} layers")
    return rows, layers


def _layer_classes():
    """Custom layers (defined lazily: keras is imported only when converting)."""
    import keras
    from keras import ops

    class AddConst(keras.layers.Layer):
        def __init__(self, value, **kw):
            super().__init__(**kw)
            self.value = np.asarray(value, np.float32)

        def call(self, x):
            return x + ops.convert_to_tensor(self.value)

    class Decode(keras.layers.Layer):
        def __init__(self, na, no, nc, stride, grid, anchor_grid, **kw):
            super().__init__(**kw)
            self.na, self.no, self.nc, self.stride = na, no, nc, np.float32(stride)
            self.grid, self.anchor_grid = np.asarray(grid, np.float32), np.asarray(anchor_grid, np.float32)

        def call(self, x):
            ny, nx = x.shape[1], x.shape[2]
            # (B, ny, nx, na*no) -> (B, na, ny, nx, no) -> (B, na*ny*nx, no): PyTorch's row order
            y = ops.reshape(x, (-1, ny, nx, self.na, self.no))
            y = ops.transpose(y, (0, 3, 1, 2, 4))
            y = ops.reshape(y, (-1, self.na * ny * nx, self.no))
            s = ops.sigmoid(y[..., :5 + self.nc])
            xy = (s[..., 0:2] * 2.0 + ops.convert_to_tensor(self.grid)) * self.stride
            wh2 = s[..., 2:4] * 2.0
            wh = (wh2 * wh2) * ops.convert_to_tensor(self.anchor_grid)
            return ops.concatenate([xy, wh, s[..., 4:], y[..., 5 + self.nc:]], axis=-1)

    class NearestUp2(keras.layers.Layer):
        """Nearest-neighbour 2x upsampling as concatenate + reshape: the same copies as
        UpSampling2D, but ops XNNPACK runs (UpSampling2D becomes TILE, which splits the
        delegated graph and runs on the slow reference kernels)."""

        def call(self, x):
            h, w, c = x.shape[1], x.shape[2], x.shape[3]
            x = ops.reshape(ops.concatenate([x, x], axis=-1), (-1, h, 2 * w, c))  # columns
            return ops.reshape(ops.concatenate([x, x], axis=2), (-1, 2 * h, 2 * w, c))  # rows

    return AddConst, Decode, NearestUp2


def _AddConst(value, name):
    return _layer_classes()[0](value, name=name)


def _Decode(na, no, nc, stride, grid, anchor_grid, name):
    return _layer_classes()[1](na, no, nc, stride, grid, anchor_grid, name=name)


def build_keras_model(ck: Checkpoint, imgsz: int = 640):
    """Keras model (input [B, imgsz, imgsz, 3] RGB 0..1) -> [pred, protos]."""
    try:
        return _Builder(ck, imgsz).build()
    except CheckpointError:
        raise
    except (KeyError, AttributeError, TypeError, IndexError, ValueError) as e:
        # a record lacking a weight or attribute the forward needs, or weights of the wrong shape
        text = " ".join(str(e).split())[:200]
        raise CheckpointError(ck.path, f"malformed model ({type(e).__name__}: {text})") from None


def keras_from_file(pt_path: Path | str, imgsz: int = 640):
    from segkit.models.yolo_checkpoint import load_checkpoint

    return build_keras_model(load_checkpoint(pt_path), imgsz)
