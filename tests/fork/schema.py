"""Message classes for caffe-segnet's caffemodel format, compiled from tests/fork/fork_wire.proto.

`fork_wire.proto` is written by us: the subset of the fork's `caffe.proto` (alexgkendall/caffe-segnet, commit
1a2cfea16c5dac7203905b67c4d1c348cb5062ff) that tests/fork/caffemodels.py writes and the converter tests read,
each field with the fork's name, number, type, label and default. `messages()` runs protoc (the one
grpcio-tools bundles, `grpc_tools.protoc`, pinned in pyproject's `test` extra) on it into a temporary folder,
asking only for a FileDescriptorSet, and builds Python message classes from it: `messages().NetParameter`,
`.LayerParameter`, `.BNParameter`, ...

The classes live in a private `DescriptorPool` under our own package (`segnet_fork`), so nothing touches
BVLC's `caffe.*` messages that pycaffe's `caffe_pb2` registers in protobuf's default pool (conftest imports
caffe). The package name never reaches the wire: a serialised message holds field numbers and values only.

Before returning the classes, `messages()` checks the numbers of the fields that matter most (those where
the fork's file differs from BVLC's, or that every file holds) against the fork's, written below as literals.
"""

from __future__ import annotations

import functools
import tempfile
import types
from pathlib import Path

PROTO = Path(__file__).with_name("fork_wire.proto")
PACKAGE = "segnet_fork"

# (message, field) -> the field's number in caffe-segnet's src/caffe/proto/caffe.proto at commit
# 1a2cfea16c5dac7203905b67c4d1c348cb5062ff; the comment is that file's line.
FORK_NUMBERS = {
    ("BlobShape", "dim"): 1,                              # line 7
    ("BlobProto", "data"): 5,                             # line 12
    ("BlobProto", "shape"): 7,                            # line 11
    ("NetParameter", "layer"): 100,                       # line 90
    ("LayerParameter", "blobs"): 7,                       # line 292
    ("LayerParameter", "bn_param"): 45,                   # line 321
    ("LayerParameter", "upsample_param"): 137,            # line 355
    ("LayerParameter", "dense_image_data_param"): 138,    # line 326
    ("LossParameter", "weight_by_label_freqs"): 3,        # line 390
    ("LossParameter", "class_weighting"): 4,              # line 391
    ("BNParameter", "bn_mode"): 3,                        # line 431
    ("UpsampleParameter", "scale"): 1,                    # line 914
    ("UpsampleParameter", "pad_out_h"): 4,                # line 923
}
# enum BNParameter.BNMode, fork lines 427-430.
FORK_BN_MODES = {"LEARN": 0, "INFERENCE": 1}


def check_fork_numbers(pool) -> None:
    """Raise if a key field or the BN modes of the compiled schema are not numbered as in the fork's file."""
    wrong = []
    for (message, field), number in FORK_NUMBERS.items():
        got = pool.FindMessageTypeByName(f"{PACKAGE}.{message}").fields_by_name.get(field)
        if got is None or got.number != number:
            wrong.append(f"{message}.{field} is {got and got.number}, the fork's is {number}")
    modes = pool.FindEnumTypeByName(f"{PACKAGE}.BNParameter.BNMode").values_by_name
    if {name: value.number for name, value in modes.items()} != FORK_BN_MODES:
        wrong.append(f"BNParameter.BNMode is {sorted((n, v.number) for n, v in modes.items())}, "
                     f"the fork's is {sorted(FORK_BN_MODES.items())}")
    if wrong:
        raise RuntimeError(f"{PROTO} no longer matches caffe-segnet's wire format: " + "; ".join(wrong))


@functools.cache
def messages() -> types.SimpleNamespace:
    """Every top-level message of fork_wire.proto, by its name, as a Python class (and `pool`)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fork_wire.pb"
        rc = protoc.main(["protoc", f"--proto_path={PROTO.parent}", f"--descriptor_set_out={out}",
                          PROTO.name])
        if rc != 0:
            raise RuntimeError(f"protoc could not compile {PROTO} (exit {rc})")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file_proto,) = files.file
    assert file_proto.package == PACKAGE, file_proto.package
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    check_fork_numbers(pool)
    names = [m.name for m in file_proto.message_type]
    return types.SimpleNamespace(**{name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in names}, pool=pool)
