"""The 4x upscale before super-resolution: torch F.interpolate(mode="bicubic",
align_corners=False, antialias=True), plus an explicit separable-matrix version of the same
filter (Keys cubic a=-0.5, PIL-style centres, taps outside the image dropped and the
weights renormalised) that documents the math and serves as a cross-check."""

import torch
import torch.nn.functional as F

from .clip import pil_coeffs


def upscale_bicubic_aa(x, size):
    """x: (B,C,H,W) float -> (B,C,size[0],size[1]); exactly what the unCLIP pipelines call."""
    return F.interpolate(x, size=list(size), mode="bicubic", align_corners=False, antialias=True)


def resample_matrix(in_size, out_size, dtype=torch.float32):
    """(out_size, in_size) matrix of the antialiased bicubic weights along one axis."""
    xmins, rows = pil_coeffs(in_size, out_size)
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i, (xmin, ws) in enumerate(zip(xmins, rows)):
        for k, w in enumerate(ws):
            m[i, xmin + k] = w
    return m.to(dtype)


def bicubic_aa_matrix(x, size):
    """Same result as upscale_bicubic_aa (to fp32 rounding), written as two matrix products."""
    mh = resample_matrix(x.shape[-2], size[0], x.dtype)
    mw = resample_matrix(x.shape[-1], size[1], x.dtype)
    return torch.matmul(torch.matmul(mh, x), mw.t())
