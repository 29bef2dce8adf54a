#!/usr/bin/env python3
"""Prints README's performance table from the last criterion run of `benches/peers.rs`.

    python3 tools/bench-table.py --run    # runs the benchmarks below, then prints
    python3 tools/bench-table.py          # prints from criterion's last results
    python3 tools/bench-table.py --scaling --run   # the same for the 64-W-W-10 scaling table
                                                   # (--warm-up-time 1 --measurement-time 2)

`--run` runs, pinned to core 1,
    taskset -c 1 cargo bench --features bench-peers --bench peers -- \\
        --warm-up-time 2 --measurement-time 4 "fma_peak|alignment|dense_|sigmoid_and|train_step_64"
and uses only results written by that run.

Every row is a ratio of two benchmarks of that one run (criterion's estimate: the slope
where it has one, else the mean), so the machine's drift between runs cancels. The matrix
kernels and the training step also get the share of this core's FMA peak that they reach:
2 FLOP per multiply-add against `fma_peak/fma_chains` of the same run (independent chains
of fused multiply-adds on the widest vectors the CPU has). A row whose benchmarks did not
run is left out and named on stderr.
"""
import json
import subprocess
import time
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"

# Multiply-adds of one 64-128-128-10 training step at batch 32: the forward and dW of
# the three layers, dX of the last two (the first layer's input gradient is not needed).
STEP_MACS = 32 * (2 * (64 * 128 + 128 * 128 + 128 * 10) + (128 * 128 + 128 * 10))

# (what, peer's name, peer's benchmark, gradguard's benchmark, multiply-adds or None)
ROWS = [
    ("train step 64-128-128-10, batch 32, softmax-CE, ReLU", "ndarray (fastest peer)",
     "train_step_64_128_128_10_batch32/ndarray/relu",
     "train_step_64_128_128_10_batch32/gradguard/relu", STEP_MACS),
    ("the same, sigmoid", "ndarray (fastest peer)",
     "train_step_64_128_128_10_batch32/ndarray/sigmoid",
     "train_step_64_128_128_10_batch32/gradguard/sigmoid", STEP_MACS),
    ("the same, ReLU", "nalgebra `SMatrix`",
     "train_step_64_128_128_10_batch32/nalgebra/relu",
     "train_step_64_128_128_10_batch32/gradguard/relu", STEP_MACS),
    ("dense forward 64×64, batch 32", "gemm 0.19 (`x86-v4`)",
     "dense_forward_batch32/gemm/64x64", "dense_forward_batch32/gradguard/64x64", 64 * 64 * 32),
    ("dense forward 128×128, batch 32", "gemm",
     "dense_forward_batch32/gemm/128x128", "dense_forward_batch32/gradguard/128x128",
     128 * 128 * 32),
    ("dense forward 128×128, batch 32", "matrixmultiply",
     "dense_forward_batch32/matrixmultiply/128x128", "dense_forward_batch32/gradguard/128x128",
     128 * 128 * 32),
    ("dense forward 128×128, batch 32", "ndarray",
     "dense_forward_batch32/ndarray/128x128", "dense_forward_batch32/gradguard/128x128",
     128 * 128 * 32),
    ("dense forward 128×128, batch 32", "nalgebra",
     "dense_forward_batch32/nalgebra/128x128", "dense_forward_batch32/gradguard/128x128",
     128 * 128 * 32),
    ("dense forward 784×128, batch 32", "gemm",
     "dense_forward_batch32/gemm/784x128", "dense_forward_batch32/gradguard/784x128",
     784 * 128 * 32),
    ("dense forward 784×128, batch 32", "matrixmultiply",
     "dense_forward_batch32/matrixmultiply/784x128", "dense_forward_batch32/gradguard/784x128",
     784 * 128 * 32),
    ("dense forward 784×128, batch 32", "ndarray",
     "dense_forward_batch32/ndarray/784x128", "dense_forward_batch32/gradguard/784x128",
     784 * 128 * 32),
    ("dense forward 128×128, batch 1", "auto-vectorised axpy loop over Wᵀ",
     "dense_forward_batch1_128x128/axpy_loop", "dense_forward_batch1_128x128/gradguard",
     128 * 128),
    ("dX = dZ·W, 64×64, batch 32", "gemm",
     "dense_backward_batch32/gemm_dx/64x64", "dense_backward_batch32/gradguard_dx/64x64",
     64 * 64 * 32),
    ("dX, 128×128, batch 32", "gemm",
     "dense_backward_batch32/gemm_dx/128x128", "dense_backward_batch32/gradguard_dx/128x128",
     128 * 128 * 32),
    ("dW = dZᵀ·X (+ db), 64×64, batch 32", "gemm (dW only)",
     "dense_backward_batch32/gemm_dw/64x64", "dense_backward_batch32/gradguard_dw_db/64x64",
     64 * 64 * 32),
    ("dW (+ db), 128×128, batch 32", "gemm (dW only)",
     "dense_backward_batch32/gemm_dw/128x128", "dense_backward_batch32/gradguard_dw_db/128x128",
     128 * 128 * 32),
    ("σ(x) and σ'(x) over 4096 f32, one pass", "`f32::exp` loop",
     "sigmoid_and_derivative_4096/std_f32_exp_loop", "sigmoid_and_derivative_4096/gradguard",
     None),
    ("σ(x) and σ'(x) over 4096 f32, one pass", "the same, two passes",
     "sigmoid_and_derivative_4096/gradguard_two_passes", "sigmoid_and_derivative_4096/gradguard",
     None),
    ("naive triple loop, forward 128×128, batch 32", "—",
     "dense_forward_batch32/naive_loop/128x128", "dense_forward_batch32/gradguard/128x128",
     128 * 128 * 32),
    ("dX, 128×128, batch 1: W 16 bytes off a cache line / on one", "the same kernel, W aligned",
     "alignment_dx_batch1_128x128/w_aligned", "alignment_dx_batch1_128x128/w_16_bytes_off",
     None),
]


FILTER = "fma_peak|alignment|dense_|sigmoid_and|train_step_64"
BENCH = ["taskset", "-c", "1", "cargo", "bench", "--features", "bench-peers", "--bench",
         "peers", "--"]
COMMAND = BENCH + ["--warm-up-time", "2", "--measurement-time", "4", FILTER]
SCALING_COMMAND = BENCH + ["--warm-up-time", "1", "--measurement-time", "2",
                           "train_step_scaling"]


def estimates(since):
    """full_id -> seconds, for every benchmark whose result was written after `since`."""
    found = {}
    for meta in ROOT.glob("**/new/benchmark.json"):
        if meta.stat().st_mtime < since:
            continue
        bench = json.loads(meta.read_text())
        est = json.loads((meta.parent / "estimates.json").read_text())
        point = (est.get("slope") or est["mean"])["point_estimate"]
        found[bench["full_id"]] = point * 1e-9
    return found


def duration(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e9:.0f} ns"


def scaling(times):
    """README's scaling table: 64-W-W-10 steps, gradguard / ndarray, for each W and batch."""
    group = "train_step_scaling_64_w_w_10"
    widths, batches = [32, 64, 128, 256, 512], [1, 8, 32, 128]
    print("| W \\ batch | " + " | ".join(str(b) for b in batches) + " |")
    print("|---|" + "---:|" * len(batches))
    for w in widths:
        cells = []
        for b in batches:
            ours = times.get(f"{group}/gradguard/w{w}_b{b}")
            peer = times.get(f"{group}/ndarray/w{w}_b{b}")
            if ours is None or peer is None:
                cells.append("–")
                print(f"bench-table.py: no result for W={w}, batch {b}", file=sys.stderr)
                continue
            cells.append(f"{ours / peer:.2f} ({duration(ours)} / {duration(peer)})")
        print(f"| {w} | " + " | ".join(cells) + " |")


def main():
    since = 0.0
    args = sys.argv[1:]
    command = SCALING_COMMAND if "--scaling" in args else COMMAND
    if "--run" in args:
        since = time.time()
        subprocess.run(command, check=True, cwd=ROOT.parent.parent, stdout=sys.stderr)
    times = estimates(since)
    if "--scaling" in args:
        scaling(times)
        return
    peak = times.get("fma_peak/fma_chains")
    flops = None
    if peak is not None:
        meta = json.loads((ROOT / "fma_peak/fma_chains/new/benchmark.json").read_text())
        flops = meta["throughput"]["Elements"] / peak
        print(f"FMA peak (fma_peak/fma_chains): {flops / 1e9:.1f} GFLOP/s\n")
    print("| what | peer | peer time | gradguard | ratio (ours / peer) | gradguard, % of FMA peak |")
    print("|---|---|---:|---:|---:|---:|")
    for what, peer_name, peer, ours, macs in ROWS:
        if peer not in times or ours not in times:
            print(f"bench-table.py: no result for {peer} or {ours}", file=sys.stderr)
            continue
        t_peer, t_ours = times[peer], times[ours]
        share = "—"
        if macs is not None and flops:
            share = f"{100 * 2 * macs / t_ours / flops:.0f} %"
        print(f"| {what} | {peer_name} | {duration(t_peer)} | {duration(t_ours)} "
              f"| {t_ours / t_peer:.2f} | {share} |")


if __name__ == "__main__":
    main()
