"""Caffe NetSpec generators for the 13 architectures of the SegNet paper (see prototxt/README_table.md).

    from prototxt import ARCHS, Options, build_net, build_solver, count_params
    net = build_net("segnet-basic", Options(split="deploy"))      # a caffe_pb2.NetParameter
"""

from .options import Options, OptionsError
from .params import count_params
from .registry import ARCHS, build_net, resolve
from .solver import build_solver
from .surgery import bilinear_surgery

__all__ = ["ARCHS", "Options", "OptionsError", "bilinear_surgery", "build_net", "build_solver", "count_params",
           "resolve"]
