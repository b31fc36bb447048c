#!/usr/bin/env python3
"""Reads a fort model file (safetensors) with numpy alone and prints its metadata and sizes.

Usage: read_model.py MODEL.safetensors [--values]

Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer.
See docs/files.md ("Model files").
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}


def read_model(path):
    """Returns (metadata dict, {name: numpy array})."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} is larger than the rest of the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]])
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
    return metadata, tensors


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    metadata, tensors = read_model(argv[1])
    if metadata.get("format") != "fort-model":
        print(f"warning: format is {metadata.get('format')!r}, expected 'fort-model'", file=sys.stderr)
    for key in sorted(metadata):
        print(f"{key}: {metadata[key]}")
    params = tensors["params"]
    print(f"parameters: {params.size} ({params.dtype})")
    print(f"state entries: {tensors['state'].size}")
    if "--values" in argv[2:]:
        np.set_printoptions(precision=17, threshold=sys.maxsize)
        print("params:", params)
        print("state:", tensors["state"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
