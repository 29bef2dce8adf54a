#!/usr/bin/env python3
"""Trains nn.Sequential(Linear(64, 16), ReLU(), Linear(16, 10)) on the UCI digits in
PyTorch and writes the fixtures gradguard's interchange tests compare against:

  tests/data/pytorch-digits-64-16-10.safetensors  the state_dict (safetensors.torch.save_file)
  tests/data/pytorch_digits.rs                    the logits PyTorch computes for 8 digits

CI does not run this (it needs PyTorch); the files are committed. Regenerate with

  python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.5.1 safetensors numpy
  /tmp/torch/bin/python tools/pytorch-digits.py

Inputs are the pixels / 16 of records 0..7 of data/digits.bin (the layout of
data/README.md: 65 bytes per record, 64 pixels 0..16 then the label). The logits are
written as f32 bit patterns, so the Rust side sees exactly what PyTorch computed.
"""
import pathlib
import struct

import numpy as np
import safetensors.torch
import torch

root = pathlib.Path(__file__).resolve().parent.parent
raw = np.frombuffer((root / "data" / "digits.bin").read_bytes(), dtype=np.uint8).reshape(-1, 65)
x = torch.tensor(raw[:, :64], dtype=torch.float32) / 16.0
y = torch.tensor(raw[:, 64], dtype=torch.int64)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(20):
    order = torch.randperm(len(x))
    for start in range(0, len(x), 32):
        batch = order[start:start + 32]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    logits = model(x[:8])
print(f"torch {torch.__version__}: training accuracy {accuracy:.4f}, last batch loss {loss.item():.4f}")

safetensors.torch.save_file(model.state_dict(), root / "tests" / "data" / "pytorch-digits-64-16-10.safetensors")

def bits(v):
    return "f32::from_bits(0x%08x)" % struct.unpack("<I", struct.pack("<f", v))[0]

rows = ",\n".join("    [" + ", ".join(bits(float(v)) for v in row) + "]" for row in logits)
(root / "tests" / "data" / "pytorch_digits.rs").write_text(
    "// Written by tools/pytorch-digits.py (torch %s): the logits PyTorch computed for records\n"
    "// 0..7 of the digits (pixels / 16) with the network in pytorch-digits-64-16-10.safetensors.\n"
    "// Its accuracy over all 1797 records: %.4f.\n"
    "pub const PYTORCH_LOGITS: [[f32; 10]; 8] = [\n%s,\n];\n" % (torch.__version__, accuracy, rows)
)
