//! Dense forward and backward on arbitrary weights, inputs and gradients, differential:
//! every SIMD backend this machine has against the scalar reference (within
//! `kernels::matrix_error_bound` or bit-identical, and the same health counts), with the
//! check shared with `tests/backends.rs`. Run: `cargo +nightly fuzz run dense`.
#![no_main]

#[path = "../../tests/support/differential.rs"]
mod differential;

use gradguard::kernels::Backend;
use libfuzzer_sys::fuzz_target;

/// `n` f32 values from the input's bytes, as arbitrary bit patterns (cycled if short).
fn values(data: &[u8], n: usize, offset: usize) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let at = (offset + 4 * k) % data.len().max(1);
            let b = |j: usize| data.get((at + j) % data.len().max(1)).copied().unwrap_or(0);
            f32::from_bits(u32::from_le_bytes([b(0), b(1), b(2), b(3)]))
        })
        .collect()
}

fn check<const IN: usize, const OUT: usize, const B: usize>(data: &[u8]) {
    let backends: Vec<Backend> = Backend::available()
        .filter(|&b| b != Backend::Scalar)
        .collect();
    let w = values(data, IN * OUT, 0);
    let b = values(data, OUT, 4 * IN * OUT);
    let x = values(data, IN * B, 4 * (IN * OUT + OUT));
    let dz = values(data, OUT * B, 4 * (IN * OUT + OUT + IN * B));
    if let Err(e) = differential::check_dense::<IN, OUT, B>(&w, &b, &x, &dz, &backends) {
        panic!("{e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 4 {
        return;
    }
    // Batches above 64 too (the kernels block samples; the tails past 64 must agree). A
    // first byte from 0xF8 on: inputs past one packed chunk of the batch-lanes forward (263
    // = 132 + 131), 16 of 24 units and 16 of 19 samples in its blocks, the rest in dot
    // products. (The other bytes keep the shapes the seed corpus was written for.)
    if shape >= 0xF8 {
        check::<263, 24, 19>(rest);
        return;
    }
    match shape % 7 {
        0 => check::<3, 5, 2>(rest),
        1 => check::<17, 9, 3>(rest),
        2 => check::<33, 20, 5>(rest),
        3 => check::<5, 3, 67>(rest),
        4 => check::<16, 8, 96>(rest),
        5 => check::<9, 33, 130>(rest),
        _ => check::<8, 16, 4>(rest),
    }
});
