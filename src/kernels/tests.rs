//! Unit tests of the kernels that `cargo +nightly miri test --lib` runs: the scalar path
//! (the microcontroller path) and, on x86_64, the SSE2 instances of the generic bodies,
//! whose unaligned loads and stores through checked slices Miri verifies for undefined
//! behaviour. Small awkward shapes, adversarial values, naive references.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use super::generic::{
    self, AdamStep, Backward, BackwardTally, ExpShifted, Magnitudes, Value, Vector,
};
use super::generic::{backward_one_lane, relu_backward_one_lane};
use super::{scalar, GradMode};
use crate::health::TensorStats;
use crate::{Elementwise, Relu, Sigmoid, Tanh};

/// A deterministic mix of ordinary and adversarial values.
fn values(n: usize, seed: u32) -> std::vec::Vec<f32> {
    const SPECIAL: [f32; 8] = [
        0.0,
        -0.0,
        1e-40,
        -1e-45,
        1e38,
        f32::NAN,
        f32::INFINITY,
        -3.5,
    ];
    (0..n as u32)
        .map(|k| {
            let h = (k.wrapping_mul(2_654_435_761) ^ seed).rotate_left(7);
            if h.is_multiple_of(11) {
                SPECIAL[(h / 11 % 8) as usize]
            } else {
                (h % 2001) as f32 / 250.0 - 4.0
            }
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

extern crate std;

#[test]
fn scalar_matrix_kernels_match_naive_sums() {
    const IN: usize = 5;
    const OUT: usize = 3;
    const B: usize = 2;
    let v = values(IN * OUT + OUT + IN * B + OUT * B, 1)
        .into_iter()
        .map(|x| {
            if x.is_finite() && x.abs() < 1e30 {
                x
            } else {
                0.5
            }
        })
        .collect::<std::vec::Vec<_>>();
    let w: [[f32; IN]; OUT] = core::array::from_fn(|o| core::array::from_fn(|i| v[o * IN + i]));
    let b: [f32; OUT] = core::array::from_fn(|o| v[IN * OUT + o]);
    let x: [[f32; IN]; B] = core::array::from_fn(|s| core::array::from_fn(|i| v[18 + s * IN + i]));
    let dz: [[f32; OUT]; B] =
        core::array::from_fn(|s| core::array::from_fn(|o| v[28 + s * OUT + o]));
    let mut z = [[0.0; OUT]; B];
    scalar::dense_forward(&w, &b, &x, &mut z);
    let mut dx = [[0.0; IN]; B];
    scalar::dense_backward_input(&w, &dz, &mut dx);
    let (mut dw, mut db) = ([[0.0; IN]; OUT], [0.0; OUT]);
    scalar::dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
    for s in 0..B {
        for o in 0..OUT {
            // The reference order: inputs from 0 upwards, then the bias.
            let mut t = 0.0f32;
            for i in 0..IN {
                t += w[o][i] * x[s][i];
            }
            assert_eq!(z[s][o].to_bits(), (t + b[o]).to_bits());
        }
        for i in 0..IN {
            let mut t = 0.0f32;
            for o in 0..OUT {
                t += dz[s][o] * w[o][i];
            }
            assert_eq!(dx[s][i].to_bits(), t.to_bits());
        }
    }
    for o in 0..OUT {
        for i in 0..IN {
            let mut t = 0.0f32;
            for s in 0..B {
                t += dz[s][o] * x[s][i];
            }
            assert_eq!(dw[o][i].to_bits(), t.to_bits());
        }
        assert_eq!(db[o], dz[0][o] + dz[1][o]);
    }
}

/// Every generic body at `V` against a per-element reference written here (the scalar
/// functions and formulas, one element at a time, and f64 sums), on lengths around the lane
/// count (so both the vector loop and the tail run). At `V = f32` this checks the loop
/// machinery (tails, indexing, the common length) against plain iteration.
/// `fuses`: the vector type's `mul_add` is fused (dX and dW then within
/// `matrix_error_bound` instead of bit-identical).
fn generic_bodies_agree<V: Vector>(fuses: bool) {
    let collect = |n: usize, f: &dyn Fn(usize) -> f32| (0..n).map(f).collect::<std::vec::Vec<_>>();
    // The sixteen-way reduction returns vector j's sum at index j. Lanes are small integers,
    // so every order of addition is exact and a misplaced sum cannot pass.
    let vectors: [V; 16] =
        core::array::from_fn(|j| V::load(&collect(V::LANES, &|l| (j * 100 + l * 3) as f32)));
    for (j, &sum) in V::reduce_sum16(vectors).iter().enumerate() {
        let exact: f32 = (0..V::LANES).map(|l| (j * 100 + l * 3) as f32).sum();
        assert_eq!(sum, exact, "reduce_sum16, vector {j}");
    }
    // The transpose moves lane c of vector r to lane r of vector c (distinct integers, so
    // any misplaced lane fails); a slice of another length is left alone.
    let lanes = |block: &[V]| -> std::vec::Vec<f32> {
        let mut all = std::vec![0.0; block.len() * V::LANES];
        for (v, out) in block.iter().zip(all.chunks_mut(V::LANES)) {
            v.store(out);
        }
        all
    };
    let mut block: [V; 16] =
        core::array::from_fn(|r| V::load(&collect(V::LANES, &|c| (r * 16 + c) as f32)));
    V::transpose(&mut block[..V::LANES]);
    let expected: std::vec::Vec<f32> = (0..V::LANES)
        .flat_map(|r| collect(V::LANES, &|c| (c * 16 + r) as f32))
        .collect();
    assert_eq!(lanes(&block[..V::LANES]), expected, "transpose");
    let before = lanes(&block);
    V::transpose(&mut block[..V::LANES.saturating_sub(1)]);
    assert_eq!(lanes(&block), before, "a short slice is not transposed");
    // Past four vectors the elementwise bodies evaluate groups of four interleaved.
    let l = V::LANES;
    for n in [
        0,
        1,
        3,
        4,
        5,
        7,
        9,
        17,
        4 * l - 1,
        4 * l,
        5 * l + 3,
        8 * l + 2 * l + 1,
    ] {
        let (z, dy) = (values(n, 2), values(n, 3));
        let mut a = std::vec![0.0; n];
        generic::map::<V, _>(&Value(&Sigmoid), &z, &[], &[], &mut a);
        assert!(
            same_bits(&a, &collect(n, &|k| Sigmoid.value(z[k]))),
            "sigmoid, n = {n}"
        );
        let mut d = std::vec![0.0; n];
        generic::value_and_derivative::<V, _>(&Tanh, &z, &mut a, &mut d);
        assert!(
            same_bits(&a, &collect(n, &|k| Tanh.value(z[k])))
                && same_bits(&d, &collect(n, &|k| Tanh.derivative(z[k]))),
            "tanh and tanh', n = {n}"
        );
        generic::map::<V, _>(&Backward(&Tanh), &z, &dy, &[], &mut a);
        let expected = collect(n, &|k| dy[k] * Tanh.derivative(z[k]));
        assert!(same_bits(&a, &expected), "tanh backward, n = {n}");
        generic::map::<V, _>(&ExpShifted(1.5), &z, &[], &[], &mut a);
        let expected = collect(n, &|k| crate::math::exp(z[k] - 1.5));
        assert!(same_bits(&a, &expected), "exp, n = {n}");
        // A shorter output: only the common length is written.
        let mut short = std::vec![7.0; n / 2];
        generic::map::<V, _>(&Value(&Relu), &z, &[], &[], &mut short);
        assert!(
            same_bits(&short, &collect(n / 2, &|k| Relu.value(z[k]))),
            "relu, n = {n}"
        );
        let step = AdamStep {
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.01,
            lr_t: 0.003,
            eps_t: 1e-8,
        };
        let (mut w0, mut m0, mut v0) = (z.clone(), dy.clone(), std::vec![0.5; n]);
        let (w1, m1, v1) = (w0.clone(), m0.clone(), v0.clone());
        generic::adam_update::<V>(&mut w0, &dy, &mut m0, &mut v0, &step);
        for k in 0..n {
            let (w, m, v) = generic::adam_step::<f32>(w1[k], dy[k], m1[k], v1[k], &step);
            assert!(
                same_bits(&[w0[k], m0[k], v0[k]], &[w, m, v]),
                "adam {k}, n = {n}"
            );
        }
        // Statistics: counts and extremes exact, sums (at the scale 2^e the kernel chose)
        // within the rounding of a sum of n terms.
        let finite: std::vec::Vec<f32> = z.iter().copied().filter(|v| v.is_finite()).collect();
        let m = generic::moments::<V>(&finite, -126);
        let abs = || finite.iter().map(|v| v.abs());
        let max = abs().fold(0.0f32, f32::max);
        let min = abs().filter(|&a| a > 0.0).fold(f32::INFINITY, f32::min);
        assert_eq!(
            (m.magnitudes.max_abs, m.magnitudes.min_nonzero_abs),
            (max, min)
        );
        assert_eq!(
            m.magnitudes.zero,
            abs().filter(|&a| a == 0.0).count() as u64
        );
        let tiny = abs().filter(|&a| a < f32::MIN_POSITIVE).count() as u64;
        assert_eq!(m.magnitudes.tiny, tiny);
        let scale = 2f64.powi(-m.scale_exponent);
        let sum_abs: f64 = abs().map(|a| f64::from(a) * scale).sum();
        let sum_squares: f64 = abs().map(|a| (f64::from(a) * scale).powi(2)).sum();
        let close = |got: f32, exact: f64| (f64::from(got) - exact).abs() <= 1e-5 * exact;
        assert!(
            close(m.sum_abs, sum_abs) && close(m.sum_squares, sum_squares),
            "n = {n}"
        );
        let e = generic::extremes::<V>(&finite);
        assert_eq!(
            (e.0.to_bits(), e.1.to_bits()),
            (max.to_bits(), min.to_bits())
        );
    }
    // The matrix bodies on a shape with vector and tail parts: dX/dW bit-identical when
    // the vector type does not fuse (SSE2, f32).
    const IN: usize = 9;
    const OUT: usize = 5;
    const B: usize = 3;
    let v = values(IN * OUT + IN * B + OUT * B, 4);
    let w: [[f32; IN]; OUT] = core::array::from_fn(|o| core::array::from_fn(|i| v[o * IN + i]));
    let x: [[f32; IN]; B] = core::array::from_fn(|s| core::array::from_fn(|i| v[45 + s * IN + i]));
    let dz: [[f32; OUT]; B] =
        core::array::from_fn(|s| core::array::from_fn(|o| v[72 + s * OUT + o]));
    let (mut dx0, mut dx1) = ([[0.0; IN]; B], [[0.0; IN]; B]);
    generic::dense_backward_input::<V, IN, OUT, B>(&w, &dz, &mut dx0);
    scalar::dense_backward_input(&w, &dz, &mut dx1);
    let (mut dw0, mut db0, mut dw1, mut db1) =
        ([[1.0; IN]; OUT], [1.0; OUT], [[1.0; IN]; OUT], [1.0; OUT]);
    generic::dense_backward_params::<V, IN, OUT, B>(
        &dz,
        &x,
        &mut dw0,
        &mut db0,
        GradMode::Accumulate,
    );
    scalar::dense_backward_params(&dz, &x, &mut dw1, &mut db1, GradMode::Accumulate);
    assert!(same_bits(&db0, &db1));
    if fuses {
        // Fused multiply-adds in the reference order: within the documented bound of the
        // sum of the same terms (NaN exactly where the reference has it).
        let within = |got: f32, reference: f32, terms: &mut dyn Iterator<Item = f64>| {
            let sum_abs: f64 = terms.map(f64::abs).sum();
            // A partial sum may overflow (or a term is NaN): nothing to bound.
            let bounded = sum_abs.is_finite() && sum_abs < f64::from(f32::MAX);
            if !bounded {
                return true;
            }
            if got.is_nan() || reference.is_nan() {
                return got.is_nan() == reference.is_nan();
            }
            let bound = super::matrix_error_bound(OUT.max(B) + 1, sum_abs);
            (f64::from(got) - f64::from(reference)).abs() <= bound
        };
        let p = |a: f32, b: f32| f64::from(a) * f64::from(b);
        for s in 0..B {
            for i in 0..IN {
                let mut terms = (0..OUT).map(|o| p(dz[s][o], w[o][i]));
                assert!(within(dx0[s][i], dx1[s][i], &mut terms), "dx[{s}][{i}]");
            }
        }
        for o in 0..OUT {
            for i in 0..IN {
                let mut terms = (0..B).map(|s| p(dz[s][o], x[s][i])).chain([1.0]);
                assert!(within(dw0[o][i], dw1[o][i], &mut terms), "dw[{o}][{i}]");
            }
        }
    } else {
        assert!(same_bits(dx0.as_flattened(), dx1.as_flattened()));
        assert!(same_bits(dw0.as_flattened(), dw1.as_flattened()));
    }
    let b = [0.25; OUT];
    let (mut z0, mut z1) = ([[0.0; OUT]; B], [[0.0; OUT]; B]);
    generic::dense_forward::<V, IN, OUT, B>(&w, &b, &x, &mut z0);
    scalar::dense_forward(&w, &b, &x, &mut z1);
    for (p, q) in z0.as_flattened().iter().zip(z1.as_flattened()) {
        assert!(p.is_nan() == q.is_nan(), "{p} vs {q}");
    }
}

#[test]
fn generic_bodies_at_f32_are_the_scalar_functions() {
    generic_bodies_agree::<f32>(false);
    let z = values(33, 5);
    let mut d = std::vec![0.0; 33];
    super::activation_derivative(&Sigmoid, &z, &mut d);
    for (x, g) in z.iter().zip(&d) {
        assert!(g.to_bits() == Sigmoid.derivative(*x).to_bits() || g.is_nan());
    }
    let s = TensorStats::of(&z);
    assert_eq!(s.len(), 33);
}

#[cfg(gradguard_sse2)]
#[test]
fn sse2_bodies_agree_with_scalar() {
    generic_bodies_agree::<super::x86::Sse2>(false);
}

/// `load_partial` reads exactly the first n elements (zeros after) and `store_partial`
/// writes exactly n, on the buffer default (SSE2, under Miri) and on AVX-512's masked
/// loads and stores where the machine has them.
fn partial_loads_and_stores<V: Vector>() {
    let source = values(V::LANES, 3);
    for n in 0..V::LANES {
        let v = V::load_partial(&source[..n], n);
        let mut all = std::vec![9.0f32; V::LANES];
        v.store(&mut all);
        assert!(same_bits(&all[..n], &source[..n]), "load_partial {n}");
        assert!(all[n..].iter().all(|&x| x.to_bits() == 0), "zero fill {n}");
        let mut out = std::vec![7.0f32; V::LANES];
        V::load(&source).store_partial(&mut out[..n], n);
        assert!(same_bits(&out[..n], &source[..n]), "store_partial {n}");
        let mut longer = std::vec![7.0f32; V::LANES];
        V::load(&source).store_partial(&mut longer, n);
        assert!(longer[n..].iter().all(|&x| x == 7.0), "nothing past n {n}");
    }
}

#[cfg(gradguard_sse2)]
#[test]
#[allow(unsafe_code)]
fn partial_vectors_read_and_write_exactly_their_lanes() {
    partial_loads_and_stores::<super::x86::Sse2>();
    // Miri cannot run CPUID (inline assembly): ask only outside it.
    if !cfg!(miri) && super::Backend::Avx512.is_available() {
        // SAFETY: `is_available` saw AVX-512F, AVX2 and FMA in CPUID and their register
        // state enabled in XCR0.
        unsafe { avx512_partial() };
    }
    if !cfg!(miri) && super::Backend::Avx2.is_available() {
        // SAFETY: `is_available` saw AVX2 and FMA in CPUID and the AVX state in XCR0.
        unsafe { avx2_partial() };
    }
}

#[cfg(gradguard_sse2)]
#[target_feature(enable = "avx2,fma")]
fn avx2_partial() {
    partial_loads_and_stores::<super::x86::Avx2>();
    generic_bodies_agree::<super::x86::Avx2>(true);
}

#[cfg(gradguard_sse2)]
#[target_feature(enable = "avx512f,avx2,fma")]
fn avx512_partial() {
    partial_loads_and_stores::<super::x86::Avx512>();
    generic_bodies_agree::<super::x86::Avx512>(true);
}

#[cfg(gradguard_neon)]
#[test]
fn neon_bodies_and_partial_vectors() {
    generic_bodies_agree::<super::neon::Neon>(true);
    partial_loads_and_stores::<super::neon::Neon>();
}

#[cfg(gradguard_simd128)]
#[test]
fn simd128_bodies_and_partial_vectors() {
    generic_bodies_agree::<super::wasm::Simd128>(false);
    partial_loads_and_stores::<super::wasm::Simd128>();
}

/// The norm statistics the health tracking takes every step: `norm_lanes` (scaled and
/// unscaled, with and without the smallest magnitude, zeros included or not) and the
/// two-pass `moments` (the fallback), which must raise its scale from 2^-126 to the data's
/// (not leave the sums to overflow), against an f64 reference.
fn norm_statistics<V: Vector>() {
    for (n, seed) in [(0usize, 1u32), (1, 2), (17, 3), (67, 4), (130, 5)] {
        let mut w: std::vec::Vec<f32> = values(n, seed)
            .into_iter()
            .map(|v| {
                if v.is_finite() && v.abs() < 1e30 {
                    v
                } else {
                    0.5
                }
            })
            .collect();
        for zeros in [false, true] {
            if !zeros {
                w.iter_mut().filter(|v| **v == 0.0).for_each(|v| *v = 0.25);
            }
            let exact: f64 = w.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let smallest = w
                .iter()
                .map(|v| v.abs())
                .filter(|&a| a > 0.0)
                .fold(f32::INFINITY, f32::min);
            let close = |m: &generic::Moments| {
                let got = f64::from(m.sum_squares) * 4f64.powi(m.scale_exponent);
                (got - exact).abs() <= 1e-5 * exact
            };
            let scaled = generic::norm_lanes::<V, true, true>(&w, 1);
            let unscaled = generic::norm_lanes::<V, false, true>(&w, 0);
            let bare = generic::norm_lanes::<V, false, false>(&w, 0);
            let two_pass = generic::moments::<V>(&w, -126);
            for (name, m) in [("scaled", scaled), ("unscaled", unscaled), ("bare", bare)] {
                assert!(close(&m), "{name} n {n} zeros {zeros}");
            }
            assert!(close(&two_pass), "two-pass n {n}: {two_pass:?}");
            assert!(two_pass.sum_squares.is_finite() && (n == 0 || two_pass.scale_exponent > -126));
            assert_eq!(scaled.magnitudes.min_nonzero_abs, smallest, "n {n}");
            assert_eq!(unscaled.magnitudes.min_nonzero_abs, smallest, "n {n}");
            assert_eq!(bare.magnitudes.min_nonzero_abs, 0.0);
        }
    }
}

#[test]
fn norm_statistics_are_right_on_the_scalar_path_and_sse2() {
    norm_statistics::<f32>();
    #[cfg(gradguard_sse2)]
    norm_statistics::<super::x86::Sse2>();
}

const RELU_UNITS: usize = 7;
const RELU_ROWS: usize = 9;
const RELU_N: usize = RELU_UNITS * RELU_ROWS;

fn empty_tally() -> BackwardTally {
    BackwardTally {
        magnitudes: Magnitudes::EMPTY,
        dead: 0,
        saturated: 0,
        derivative_tiny: 0,
        unscaled_sums: [f32::NAN; 2],
    }
}

fn canonical_relu(v: &[f32; RELU_N]) -> [u32; RELU_N] {
    core::array::from_fn(|k| {
        if v[k].is_nan() {
            0x7fc0_0000
        } else {
            v[k].to_bits()
        }
    })
}

/// The ReLU path of the one-lane observed backward gives the general path's dz bits and
/// tally, with dead units, NaN (both signs), ±0, ±∞, subnormals and a subnormal dz.
#[test]
fn relu_one_lane_matches_the_general_one_lane_path() {
    const SPECIAL: [f32; 10] = [
        0.0,
        -0.0,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -3e-39,
        2.5,
        -1.25,
    ];
    for seed in 0..50u32 {
        let pick = |k: usize| {
            let h = (k as u32).wrapping_mul(2_654_435_761).rotate_left(7) ^ seed.wrapping_mul(97);
            if h.is_multiple_of(3) {
                SPECIAL[(h / 3 % 10) as usize]
            } else {
                (h % 1001) as f32 / 250.0 - 2.0
            }
        };
        let mut z: [f32; RELU_N] = core::array::from_fn(pick);
        let dy: [f32; RELU_N] = core::array::from_fn(|k| pick(1000 + k));
        // Unit 0 dead (every z ≤ 0, one of them −0), unit 1 dead but for one NaN.
        for r in 0..RELU_ROWS {
            z[r * RELU_UNITS] = if r == 3 { -0.0 } else { -1.0 - r as f32 };
            z[r * RELU_UNITS + 1] = if r == 5 { f32::NAN } else { -2.0 };
        }
        let (mut general, mut relu) = (empty_tally(), empty_tally());
        let (mut dz_general, mut dz_relu) = ([7.0; RELU_N], [7.0; RELU_N]);
        backward_one_lane(
            &Relu,
            &z,
            &dy,
            &mut dz_general,
            RELU_UNITS,
            RELU_ROWS,
            0.1,
            &mut general,
        );
        relu_backward_one_lane(
            &Relu,
            &z,
            &dy,
            &mut dz_relu,
            RELU_UNITS,
            RELU_ROWS,
            &mut relu,
        );
        assert_eq!(
            canonical_relu(&dz_general),
            canonical_relu(&dz_relu),
            "seed {seed}"
        );
        assert_eq!(general.magnitudes, relu.magnitudes, "seed {seed}");
        assert_eq!(
            (general.dead, general.saturated, general.derivative_tiny),
            (relu.dead, relu.saturated, relu.derivative_tiny),
            "seed {seed}"
        );
        assert_eq!(
            general.unscaled_sums.map(f32::to_bits),
            relu.unscaled_sums.map(f32::to_bits)
        );
        assert!(relu.dead >= 1, "seed {seed}");
    }
}
