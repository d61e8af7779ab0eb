"""Minimal safetensors reader/writer on numpy (our own code; no `safetensors` package here).

Format: u64 little-endian header length N, N bytes of JSON mapping tensor names to
{"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the byte after the
header) plus an optional "__metadata__" string map, then the raw little-endian C-order data.

    read(path)            -> dict name -> numpy array (BF16 is widened to float32)
    read_torch(path)      -> dict name -> torch.Tensor (BF16 stays bfloat16)
    read_metadata(path)   -> the "__metadata__" dict (or {})
    write(path, tensors, metadata={"format": "pt"})   tensors: numpy arrays or torch tensors
"""

import json
import os
import struct

import numpy as np

# safetensors dtype name -> (numpy dtype, item size). BF16 has no numpy dtype: read as u16.
_DTYPES = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}
_NP_TO_ST = {
    np.dtype("f8"): "F64", np.dtype("f4"): "F32", np.dtype("f2"): "F16",
    np.dtype("i8"): "I64", np.dtype("i4"): "I32", np.dtype("i2"): "I16",
    np.dtype("i1"): "I8", np.dtype("u1"): "U8", np.dtype("?"): "BOOL",
}


def resolve_path(path):
    """Follow 'pseudo symlinks': a tiny regular file whose whole content is a relative path
    to an existing file (what a symlink becomes when copied by a tool that does not keep
    links; the golden variations folder is stored like that). Returns the real path."""
    for _ in range(8):
        try:
            if os.path.islink(path) or os.path.getsize(path) > 4096:
                return path
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            return path
        try:
            text = head.decode("utf-8").strip()
        except UnicodeDecodeError:
            return path
        if not text or "\n" in text or text.startswith(("{", "#")):
            return path
        target = os.path.normpath(os.path.join(os.path.dirname(path), text))
        if text == os.path.basename(path) or not os.path.isfile(target):
            return path
        path = target
    return path


def _read_header(f, path):
    raw = f.read(8)
    if len(raw) != 8:
        raise ValueError("%s: file shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", raw)
    size = os.fstat(f.fileno()).st_size
    if n > size - 8:
        raise ValueError("%s: header length %d exceeds file size %d" % (path, n, size))
    header = json.loads(f.read(n).decode("utf-8"))
    return header, 8 + n, size


def read_metadata(path):
    path = resolve_path(path)
    with open(path, "rb") as f:
        header, _, _ = _read_header(f, path)
    return dict(header.get("__metadata__") or {})


def _read_raw(path):
    path = resolve_path(path)
    with open(path, "rb") as f:
        header, base, size = _read_header(f, path)
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        npdt, isz = _DTYPES[dt]
        shape = tuple(int(d) for d in info["shape"])
        b, e = (int(v) for v in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if e - b != count * isz or b < 0 or base + e > size:
            raise ValueError("%s: tensor %s: offsets [%d,%d) do not fit shape %s dtype %s"
                             % (path, name, b, e, shape, dt))
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=b).reshape(shape)
        out[name] = (dt, arr)
    return out


def _bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def read(path):
    """name -> numpy array (a private writable copy). BF16 becomes float32."""
    out = {}
    for name, (dt, arr) in _read_raw(path).items():
        out[name] = _bf16_to_f32(arr) if dt == "BF16" else arr.copy()
    return out


def read_torch(path):
    """name -> torch tensor (BF16 kept as torch.bfloat16)."""
    import torch
    out = {}
    for name, (dt, arr) in _read_raw(path).items():
        if dt == "BF16":
            t = torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr.copy())
        out[name] = t
    return out


def _to_numpy(value):
    """Returns (safetensors dtype name, contiguous little-endian bytes, shape)."""
    try:
        import torch
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                arr = t.view(torch.int16).numpy().view(np.uint16)
                return "BF16", arr.astype("<u2").tobytes(), tuple(t.shape)
            value = t.numpy()
    except ImportError:
        pass
    arr = np.ascontiguousarray(np.asarray(value))
    key = arr.dtype.newbyteorder("=") if arr.dtype.byteorder not in ("=", "|") else arr.dtype
    if np.dtype(key) not in _NP_TO_ST:
        raise ValueError("unsupported dtype %s" % arr.dtype)
    dt = _NP_TO_ST[np.dtype(key)]
    le = arr.astype(_DTYPES[dt][0], copy=False)
    return dt, le.tobytes(), tuple(arr.shape)


def write(path, tensors, metadata=None):
    """Writes `tensors` (name -> numpy array or torch tensor) to `path` atomically.
    Keys are stored in sorted order; the header is padded with spaces to a multiple of 8."""
    if metadata is None:
        metadata = {"format": "pt"}
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dt, blob, shape = _to_numpy(tensors[name])
        header[name] = {"dtype": dt, "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header = dict({"__metadata__": {str(k): str(v) for k, v in metadata.items()}}, **header)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)
