//! Health classification against a straightforward bit-level reference, on arbitrary f32
//! bit patterns: class counts match and sum to the length, max and min-nonzero are the
//! extremes of the finite magnitudes, and every backend agrees. Run:
//! `cargo +nightly fuzz run health`.
#![no_main]

use gradguard::health::{classify, FloatClass, TensorStats};
use gradguard::kernels::Backend;
use libfuzzer_sys::fuzz_target;

/// The reference: classes from the exponent and mantissa bits, one value at a time.
fn reference(values: &[f32]) -> ([u64; 5], f32, f32) {
    let mut counts = [0u64; 5];
    let (mut max, mut min) = (0.0f32, f32::INFINITY);
    for &v in values {
        let bits = v.to_bits() & 0x7fff_ffff;
        let (exponent, mantissa) = (bits >> 23, bits & 0x7f_ffff);
        let class = match (exponent, mantissa) {
            (0, 0) => 0,
            (0, _) => 1,
            (0xff, 0) => 3,
            (0xff, _) => 4,
            _ => 2,
        };
        counts[class] += 1;
        let expected = [
            FloatClass::Zero,
            FloatClass::Subnormal,
            FloatClass::Normal,
            FloatClass::Infinite,
            FloatClass::Nan,
        ][class];
        assert_eq!(classify(v), expected, "{v:e} ({bits:#x})");
        if exponent != 0xff {
            let a = f32::from_bits(bits);
            max = max.max(a);
            if a != 0.0 {
                min = min.min(a);
            }
        }
    }
    (counts, max, min)
}

fuzz_target!(|data: &[u8]| {
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let (counts, max, min) = reference(&values);
    for backend in Backend::available() {
        // Each backend passed explicitly, as its token.
        let isa = backend.isa().expect("available");
        // One slice, and the same values in two parts (the scale grows between them).
        let mut whole = TensorStats::EMPTY;
        whole.add_slice_on(isa, &values);
        let mut parts = TensorStats::EMPTY;
        let (a, b) = values.split_at(values.len() / 3);
        parts.add_slice_on(isa, a);
        parts.add_slice_on(isa, b);
        for s in [whole, parts] {
            let c = s.counts;
            assert_eq!(
                [c.zero, c.subnormal, c.normal, c.infinite, c.nan],
                counts,
                "{backend:?}"
            );
            assert_eq!(s.len() as usize, values.len());
            assert_eq!(s.max_abs.to_bits(), max.to_bits(), "{backend:?}");
            assert_eq!(s.min_nonzero_abs.to_bits(), min.to_bits(), "{backend:?}");
            let (norm, mean) = (s.l2_norm(), s.mean_abs());
            assert!(norm >= 0.0 && mean >= 0.0, "norm {norm}, mean {mean}");
            assert!(mean <= max * (1.0 + 1e-5), "mean {mean} > max {max}");
        }
    }
});
