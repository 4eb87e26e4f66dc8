"""Minimal, dependency-free safetensors reader/writer (numpy only).

File layout (https://github.com/huggingface/safetensors):
  * 8 bytes: little-endian u64 N, the length of the JSON header;
  * N bytes: UTF-8 JSON object {name: {"dtype": D, "shape": [...],
    "data_offsets": [begin, end]}, optionally "__metadata__": {str: str}};
    offsets are relative to the first byte after the header;
  * the raw little-endian tensor data.

read(path)  -> dict name -> numpy array (BF16 is widened to float32; all
               other dtypes keep their numpy equivalent).
write(path, tensors, metadata=None, bf16=()) writes numpy arrays (names in
               `bf16` are stored as BF16, rounded to nearest even).

Usable as a script:  safetensors_io.py FILE...   lists the tensors.
"""

import json
import struct
import sys

import numpy as np

# safetensors dtype -> little-endian numpy dtype
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),  # raw bits; converted to float32 on read
}
_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


class SafetensorsError(ValueError):
    pass


def bf16_bits_to_f32(bits):
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """Round float32 to bf16 (nearest, ties to even); NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out[nan] = 0x7FC0
    return out


def read_header(path):
    """Return (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: file too short")
        (n,) = struct.unpack("<Q", raw)
        hdr = f.read(n)
        if len(hdr) != n:
            raise SafetensorsError(f"{path}: truncated header")
    try:
        header = json.loads(hdr.decode("utf-8"))
    except Exception as e:  # noqa: BLE001
        raise SafetensorsError(f"{path}: bad JSON header: {e}")
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not an object")
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def read(path, with_metadata=False):
    header, meta, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in header.items():
        try:
            dt = info["dtype"]
            shape = [int(s) for s in info["shape"]]
            b, e = (int(v) for v in info["data_offsets"])
        except Exception as ex:  # noqa: BLE001
            raise SafetensorsError(f"{path}: bad entry for {name!r}: {ex}")
        if dt not in _DTYPES:
            raise SafetensorsError(f"{path}: {name}: unsupported dtype {dt}")
        npdt = _DTYPES[dt]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if any(s < 0 for s in shape):
            raise SafetensorsError(f"{path}: {name}: negative dimension")
        if not (0 <= b <= e <= len(data)):
            raise SafetensorsError(f"{path}: {name}: offsets {b},{e} out of range")
        if e - b != count * npdt.itemsize:
            raise SafetensorsError(
                f"{path}: {name}: {e - b} bytes for shape {shape} {dt}")
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=b).reshape(shape)
        if dt == "BF16":
            arr = bf16_bits_to_f32(arr)
        else:
            arr = arr.astype(npdt.newbyteorder("="), copy=True)
        out[name] = arr
    if with_metadata:
        return out, meta
    return out


def write(path, tensors, metadata=None, bf16=()):
    """Write dict name -> numpy array. Names listed in `bf16` are stored as BF16."""
    bf16 = set(bf16)
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("tensor name __metadata__ is reserved")
        a = np.asarray(arr)
        if name in bf16:
            dt = "BF16"
            raw = f32_to_bf16_bits(a.astype(np.float32)).astype("<u2").tobytes()
        else:
            if a.dtype not in _NAMES:
                raise SafetensorsError(f"{name}: unsupported numpy dtype {a.dtype}")
            dt = _NAMES[a.dtype]
            raw = np.ascontiguousarray(a, dtype=_DTYPES[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": [int(s) for s in a.shape],
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((-len(hdr)) % 8)  # pad so data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for raw in blobs:
            f.write(raw)


def _main(argv):
    if not argv:
        print(__doc__)
        return 2
    for p in argv:
        header, meta, _ = read_header(p)
        print(f"{p}:" + (f"  metadata {meta}" if meta else ""))
        for name, info in header.items():
            print(f"  {name:60s} {info['dtype']:5s} {info['shape']}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
