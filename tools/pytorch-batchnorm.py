#!/usr/bin/env python3
"""Runs torch.nn.BatchNorm1d (default momentum 0.1, eps 1e-5) on fixed data and writes what
it computed to tests/data/pytorch_batch_norm.rs, for tests/batch_norm.rs to compare
gradguard's BatchNorm with:

  * two training steps (outputs, dx, dγ, dβ of the first; running mean and variance after
    each), for BatchNorm1d alone and for sigmoid(BatchNorm1d(x));
  * inference on one sample with the running statistics of the two steps;
  * the state_dict after the two steps as safetensors, names prefixed with `bn.`
    (tests/data/pytorch-batchnorm-19.safetensors); it holds the `num_batches_tracked`
    counter gradguard ignores.

19 features (a 16-lane AVX-512 vector plus a tail of 3), batches of 6. Features 0..3 have
a large mean (1e4 + N(0, 1)), the rest N(0, 2²) shifted by the feature index.

CI does not run this (it needs PyTorch); the files are committed. Regenerate with

  python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch safetensors numpy
  /tmp/torch/bin/python tools/pytorch-batchnorm.py

Every value is written as an f32 bit pattern, so the Rust side sees exactly what PyTorch
computed.
"""
import pathlib
import struct

import safetensors.torch
import torch

root = pathlib.Path(__file__).resolve().parent.parent
N, B = 19, 6
gen = torch.Generator().manual_seed(7)


def batch():
    x = torch.randn(B, N, generator=gen) * 2.0 + torch.arange(N, dtype=torch.float32)
    x[:, :3] = 1e4 + torch.randn(B, 3, generator=gen)
    return x


x1, x2 = batch(), batch()
x3 = batch()[:1]
gamma = torch.rand(N, generator=gen) + 0.5
beta = torch.randn(N, generator=gen)
dy = torch.randn(B, N, generator=gen)


def run(activation):
    bn = torch.nn.BatchNorm1d(N)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    bn.train()
    x = x1.clone().requires_grad_(True)
    y = activation(bn(x))
    y.backward(dy)
    first = dict(
        y=y.detach(),
        dx=x.grad.detach(),
        dgamma=bn.weight.grad.detach(),
        dbeta=bn.bias.grad.detach(),
        running_mean_1=bn.running_mean.clone(),
        running_var_1=bn.running_var.clone(),
    )
    with torch.no_grad():
        bn(x2)
    first["running_mean_2"] = bn.running_mean.clone()
    first["running_var_2"] = bn.running_var.clone()
    bn.eval()
    with torch.no_grad():
        first["eval"] = activation(bn(x3))
    return bn, first


bn, plain = run(lambda v: v)
_, sig = run(torch.sigmoid)
state = {"bn." + k: v.contiguous() for k, v in bn.state_dict().items()}
safetensors.torch.save_file(state, root / "tests" / "data" / "pytorch-batchnorm-19.safetensors")


def bits(v):
    return "f32::from_bits(0x%08x)" % struct.unpack("<I", struct.pack("<f", float(v)))[0]


def const(name, t):
    t = t.detach()
    if t.dim() == 1:
        return "pub const %s: [f32; %d] = [%s];\n" % (name, t.shape[0], ", ".join(bits(v) for v in t))
    rows = ",\n".join("    [" + ", ".join(bits(v) for v in row) + "]" for row in t)
    return "pub const %s: [[f32; %d]; %d] = [\n%s,\n];\n" % (name, t.shape[1], t.shape[0], rows)


out = "// Written by tools/pytorch-batchnorm.py (torch %s); see that script.\n" % torch.__version__
out += "pub const FEATURES: usize = %d;\npub const BATCH: usize = %d;\n" % (N, B)
for name, t in [("X1", x1), ("X2", x2), ("X3", x3), ("GAMMA", gamma), ("BETA", beta), ("DY", dy)]:
    out += const(name, t)
for prefix, case in [("PLAIN", plain), ("SIGMOID", sig)]:
    for key, t in case.items():
        out += const("%s_%s" % (prefix, key.upper()), t)
(root / "tests" / "data" / "pytorch_batch_norm.rs").write_text(out)
print("wrote tests/data/pytorch_batch_norm.rs and pytorch-batchnorm-19.safetensors")
