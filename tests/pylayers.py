"""Tiny Python layers used by the foundation tests (a Python layer must live in an importable module)."""

import caffe
import numpy as np


class Square(caffe.Layer):
    """y = x**2, dy/dx = 2x: enough to prove forward and backward of a Python layer run inside caffe.Net."""

    def setup(self, bottom, top):
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError("Square takes one bottom and one top")

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = np.square(bottom[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 2.0 * bottom[0].data * top[0].diff
