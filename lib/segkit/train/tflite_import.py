"""Rebuild a float TFLite segmentation model as a trainable Keras model, weights included.

Why: the one pretrained person network that can be had here is MediaPipe's selfie segmentation
(a MobileNetV3-style encoder-decoder with skip connections, shipped as .tflite). Fine-tuning it
on COCO starts from features learnt on far more data than the few hundred images here, where a
U-Net trained from scratch overfits.

The graph is read with LiteRT's flatbuffer schema (no interpreter, so MediaPipe's custom op
``Convolution2DTransposeBias`` needs no kernel) and every operator becomes the Keras layer that
computes the same thing. Global poolings become ``GlobalAveragePooling2D`` and fixed-size
bilinear resizes become 2x ``UpSampling2D``, so the rebuilt network runs at any input size that
is a multiple of its total stride, not only the size it was exported at. Only the operators such
graphs use are supported; anything else is a one-line error naming the operator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class UnsupportedGraph(ValueError):
    """The TFLite graph uses something this importer cannot express in Keras."""


#: Stands for a tensor that only computes a shape (Keras' Conv2DTranspose exports its output
#: shape as SHAPE -> STRIDED_SLICE -> PACK); Keras works shapes out itself.
_SHAPE_ONLY = object()
_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


class _Graph:
    """Tensors, constant buffers and operators of subgraph 0 of a .tflite file."""

    def __init__(self, path: Path):
        self.s = _schema()
        self.path = Path(path)
        buf = self.path.read_bytes()
        if not self.s.Model.ModelBufferHasIdentifier(buf, 0):
            raise UnsupportedGraph(f"{path}: not a TFLite flatbuffer")
        self.model = self.s.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise UnsupportedGraph(f"{path}: {self.model.SubgraphsLength()} subgraphs (need 1)")
        self.g = self.model.Subgraphs(0)
        names = {v: k for k, v in vars(self.s.BuiltinOperator).items() if not k.startswith("_")}
        self.opcodes = []
        for i in range(self.model.OperatorCodesLength()):
            code = self.model.OperatorCodes(i)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == self.s.BuiltinOperator.CUSTOM:
                self.opcodes.append("CUSTOM:" + code.CustomCode().decode())
            else:
                self.opcodes.append(names.get(builtin, str(builtin)))
        self.constants: dict[int, np.ndarray] = {}

    def tensor(self, index: int):
        return self.g.Tensors(index)

    def name(self, index: int) -> str:
        return self.tensor(index).Name().decode()

    def shape(self, index: int) -> list[int]:
        t = self.tensor(index)
        return [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def constant(self, index: int) -> np.ndarray | None:
        """The value of a constant tensor (float16 weights widened to float32), else None."""
        if index in self.constants:
            return self.constants[index]
        t = self.tensor(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        if isinstance(data, int) or data.size == 0:
            return None
        dtypes = {self.s.TensorType.FLOAT32: np.float32, self.s.TensorType.FLOAT16: np.float16,
                  self.s.TensorType.INT32: np.int32, self.s.TensorType.INT64: np.int64}
        if t.Type() not in dtypes:
            raise UnsupportedGraph(f"{self.path}: tensor {self.name(index)!r} is quantised "
                                   "(only float models can be fine-tuned)")
        value = np.frombuffer(data.tobytes(), dtypes[t.Type()]).reshape(self.shape(index))
        return value.astype(np.float32) if value.dtype == np.float16 else value

    def options(self, op, cls_name: str):
        table = op.BuiltinOptions()
        opts = getattr(self.s, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def operators(self):
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            yield (self.opcodes[op.OpcodeIndex()], op,
                   [int(t) for t in op.InputsAsNumpy()], [int(t) for t in op.OutputsAsNumpy()])


def _layer_name(graph: _Graph, index: int) -> str:
    """A Keras-legal, readable layer name from the TFLite tensor name."""
    name = graph.name(index).split("__xeno_compat__")[0]
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or f"t{index}"


def keras_model_from_tflite(path, input_size: int | tuple[int, int] | None = None,
                            name: str | None = None):
    """A Keras model computing what the TFLite model at ``path`` computes, with its weights.

    ``input_size`` (an int or (height, width)) changes the input resolution; None keeps the
    exported one. Input and output conventions are the TFLite model's own.
    """
    import keras
    from keras import layers

    graph = _Graph(path)
    s = graph.s
    (in_idx,) = [int(t) for t in graph.g.InputsAsNumpy()]
    out_ids = [int(t) for t in graph.g.OutputsAsNumpy()]
    _, h, w, c = graph.shape(in_idx)
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    inputs = keras.Input((h, w, c), name=_layer_name(graph, in_idx))
    values = {in_idx: inputs}
    fused = {s.ActivationFunctionType.NONE: None, s.ActivationFunctionType.RELU: "relu",
             s.ActivationFunctionType.RELU6: "relu6"}
    padding = {s.Padding.SAME: "same", s.Padding.VALID: "valid"}

    def activation_of(opts, op_name):
        act = opts.FusedActivationFunction()
        if act not in fused:
            raise UnsupportedGraph(f"{path}: {op_name} with fused activation {act}")
        return fused[act]

    def const(index):
        value = graph.constant(index)
        if value is None:
            raise UnsupportedGraph(f"{path}: {graph.name(index)!r} should be a constant")
        return value

    def bias_at(ins, k):  # optional last input of the convolutions
        return const(ins[k]) if len(ins) > k and ins[k] >= 0 else None

    def load(layer, kernel, bias):
        layer.set_weights([kernel] + ([bias] if bias is not None else []))

    for op_name, op, ins, outs in graph.operators():
        out = outs[0]
        lname = _layer_name(graph, out)
        if op_name == "DEQUANTIZE":  # float16 weights -> float32: a constant, not a layer
            graph.constants[out] = const(ins[0])
            continue
        x = values.get(ins[0]) if ins and ins[0] >= 0 else None
        if op_name in _SHAPE_OPS:
            if op_name != "SHAPE" and not any(values.get(t) is _SHAPE_ONLY for t in ins):
                raise UnsupportedGraph(f"{path}: operator {op_name} on data (only on shapes)")
            values[out] = _SHAPE_ONLY
            continue
        if op_name != "TRANSPOSE_CONV" and any(values.get(t) is _SHAPE_ONLY for t in ins):
            raise UnsupportedGraph(f"{path}: {op_name} uses a computed shape as data")
        if op_name == "CONV_2D":
            o = graph.options(op, "Conv2DOptions")
            kernel, bias = const(ins[1]), bias_at(ins, 2)  # kernel [out, kh, kw, in]
            layer = layers.Conv2D(
                kernel.shape[0], kernel.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                padding=padding[o.Padding()],
                dilation_rate=(o.DilationHFactor(), o.DilationWFactor()),
                activation=activation_of(o, op_name), use_bias=bias is not None, name=lname)
            y = layer(x)
            load(layer, kernel.transpose(1, 2, 3, 0), bias)
        elif op_name == "DEPTHWISE_CONV_2D":
            o = graph.options(op, "DepthwiseConv2DOptions")
            kernel, bias = const(ins[1]), bias_at(ins, 2)  # kernel [1, kh, kw, in * multiplier]
            channels = int(x.shape[-1])
            mult = kernel.shape[3] // channels
            layer = layers.DepthwiseConv2D(
                kernel.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                padding=padding[o.Padding()], depth_multiplier=mult,
                dilation_rate=(o.DilationHFactor(), o.DilationWFactor()),
                activation=activation_of(o, op_name), use_bias=bias is not None, name=lname)
            y = layer(x)
            dw = kernel[0].reshape(kernel.shape[1], kernel.shape[2], channels, mult)
            load(layer, dw, bias)
        elif op_name == "CUSTOM:Convolution2DTransposeBias" or op_name == "TRANSPOSE_CONV":
            if op_name == "TRANSPOSE_CONV":  # builtin: (output_shape, weights, input[, bias])
                o = graph.options(op, "TransposeConvOptions")
                stride, pad = (o.StrideH(), o.StrideW()), padding[o.Padding()]
                kernel, x, bias = const(ins[1]), values[ins[2]], bias_at(ins, 3)
            else:  # MediaPipe's: (input, weights, bias), options = TfLiteTransposeConvParams
                raw = np.frombuffer(bytes(op.CustomOptionsAsNumpy()), np.int32)
                pad = {1: "same", 2: "valid"}[int(raw[0])]
                stride = (int(raw[2]), int(raw[1]))
                kernel, bias = const(ins[1]), const(ins[2])
            layer = layers.Conv2DTranspose(kernel.shape[0], kernel.shape[1:3], strides=stride,
                                           padding=pad, use_bias=bias is not None, name=lname)
            y = layer(x)
            load(layer, kernel.transpose(1, 2, 0, 3), bias)  # [out,kh,kw,in] -> [kh,kw,out,in]
        elif op_name in ("ADD", "MUL"):
            o = graph.options(op, "AddOptions" if op_name == "ADD" else "MulOptions")
            if any(t not in values for t in ins):
                raise UnsupportedGraph(f"{path}: {op_name} with a constant operand")
            merge = layers.Add if op_name == "ADD" else layers.Multiply
            y = merge(name=lname)([values[t] for t in ins])
            act = activation_of(o, op_name)
            if act:
                y = layers.Activation(act, name=f"{lname}_act")(y)
        elif op_name in ("RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "TANH"):
            act = {"RELU": "relu", "RELU6": "relu6", "LOGISTIC": "sigmoid",
                   "HARD_SWISH": "hard_swish", "TANH": "tanh"}[op_name]
            y = layers.Activation(act, name=lname)(x)
        elif op_name in ("AVERAGE_POOL_2D", "MEAN"):
            in_shape, out_shape = graph.shape(ins[0]), graph.shape(out)
            if op_name == "MEAN":
                axes = sorted(int(a) % 4 for a in np.atleast_1d(const(ins[1])))
                if axes != [1, 2]:
                    raise UnsupportedGraph(f"{path}: MEAN over axes {axes} (only 1, 2)")
            elif out_shape[1:3] != [1, 1]:
                raise UnsupportedGraph(f"{path}: AVERAGE_POOL_2D {in_shape} -> {out_shape} is not "
                                       "a global pooling")
            y = layers.GlobalAveragePooling2D(keepdims=len(out_shape) == 4, name=lname)(x)
        elif op_name == "RESIZE_BILINEAR":
            o = graph.options(op, "ResizeBilinearOptions")
            in_shape, out_shape = graph.shape(ins[0]), graph.shape(out)
            factor = (out_shape[1] // in_shape[1], out_shape[2] // in_shape[2])
            if o.AlignCorners() or not o.HalfPixelCenters() or \
                    [f * i for f, i in zip(factor, in_shape[1:3])] != out_shape[1:3]:
                raise UnsupportedGraph(f"{path}: RESIZE_BILINEAR {in_shape} -> {out_shape} is not an "
                                       "integer half-pixel upsampling")
            y = layers.UpSampling2D(factor, interpolation="bilinear", name=lname)(x)
        else:
            raise UnsupportedGraph(f"{path}: operator {op_name} is not supported")
        values[out] = y

    missing = [graph.name(t) for t in out_ids if t not in values]
    if missing:
        raise UnsupportedGraph(f"{path}: outputs {missing} are not computed by the graph")
    outputs = [values[t] for t in out_ids]
    return keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs,
                       name=name or Path(path).stem)
