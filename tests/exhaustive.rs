//! Exhaustive checks over every f32 bit pattern. Slow in debug builds, so `#[ignore]`d; run
//! them with `cargo test --release -- --ignored` (CI does). Each spreads its range over all
//! available cores.
//!
//! Errors are measured as |computed − exact| / ulp(exact), with the exact value from `f64`
//! (std's libm, independent of the crate's own `libm` dependency), and compared with the
//! bounds documented next to each function in `src/math.rs`.

use gradguard::math;

#[path = "support/ulp.rs"]
mod ulp;
use std::thread;
use ulp::ulp_distance;

/// Size of one ulp at the f32 nearest to `truth` (the smallest subnormal below 2^-126).
fn ulp_at(truth: f64) -> f64 {
    let t = (truth as f32).abs();
    let bits = t.to_bits();
    if bits >= 0x7f7f_ffff {
        return f64::from(f32::MAX) - f64::from(f32::from_bits(0x7f7f_fffe));
    }
    f64::from(f32::from_bits(bits + 1)) - f64::from(t)
}

/// Error of `v` in ulp of the exact value `truth`.
fn ulp_error(v: f32, truth: f64) -> f64 {
    (f64::from(v) - truth).abs() / ulp_at(truth)
}

/// Runs `f` on every bit pattern in `start..end`, split into one contiguous chunk per core,
/// and merges the per-chunk results.
fn par_bits<S: Send + 'static>(
    start: u64,
    end: u64,
    f: fn(u32, u32) -> S,
    merge: fn(S, S) -> S,
) -> S {
    let threads = thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let chunk = (end - start).div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let lo = start + t * chunk;
            let hi = (lo + chunk).min(end);
            thread::spawn(move || f(lo as u32, (hi - 1) as u32))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .reduce(merge)
        .expect("at least one chunk")
}

#[derive(Debug, Clone, Copy, Default)]
struct MaxError {
    ulps: f64,
    at: f32,
}

impl MaxError {
    fn record(&mut self, ulps: f64, x: f32) {
        if ulps > self.ulps {
            *self = MaxError { ulps, at: x };
        }
    }
    fn merge(a: Self, b: Self) -> Self {
        if a.ulps >= b.ulps {
            a
        } else {
            b
        }
    }
}

#[test]
#[ignore = "exhaustive over 2^32 inputs: run with cargo test --release -- --ignored"]
fn exp_is_within_its_bound_for_every_f32() {
    // Over x ≥ 0 and −x together: one f64 e^x and e^x − 1 give both exact values, as
    // e^−x = 1/e^x and e^−x − 1 = −(e^x − 1)/e^x (a few f64 ulp: 2^-28 of an f32 ulp).
    fn chunk(lo: u32, hi: u32) -> [MaxError; 2] {
        let mut max = [MaxError::default(); 2];
        for bits in lo..=hi {
            let x = f32::from_bits(bits);
            let (e, em1) = (math::exp(x), math::expm1(x));
            let (en, enm1) = (math::exp(-x), math::expm1(-x));
            if x.is_nan() {
                assert!(
                    e.is_nan() && em1.is_nan() && en.is_nan() && enm1.is_nan(),
                    "NaN in must give NaN out"
                );
                continue;
            }
            if x >= 128.0 {
                // Far outside the finite range: the exact results are known constants.
                assert_eq!((e, em1), (f32::INFINITY, f32::INFINITY), "at {x:e}");
                assert_eq!((en, enm1), (0.0, -1.0), "at {:e}", -x);
                continue;
            }
            let xd = f64::from(x);
            let (te, tm1) = (xd.exp(), xd.exp_m1());
            assert!(en >= 0.0, "exp({:e}) = {en:e}", -x);
            max[0].record(ulp_error(en, 1.0 / te), -x);
            max[1].record(ulp_error(enm1, -tm1 / te), -x);
            if (te as f32).is_infinite() {
                assert_eq!(e, f32::INFINITY, "exp({x:e}) must overflow");
                assert_eq!(em1, f32::INFINITY, "expm1({x:e}) must overflow");
                continue;
            }
            max[0].record(ulp_error(e, te), x);
            max[1].record(ulp_error(em1, tm1), x);
        }
        max
    }
    let [e, m] = par_bits(0, 1 << 31, chunk, |a, b| {
        [MaxError::merge(a[0], b[0]), MaxError::merge(a[1], b[1])]
    });
    println!(
        "exp: max {:.3} ulp at {:e}; expm1: max {:.3} ulp at {:e}",
        e.ulps, e.at, m.ulps, m.at
    );
    assert!(e.ulps <= 1.0, "exp: {e:?}");
    assert!(m.ulps <= 1.75, "expm1: {m:?}");
    assert_eq!(math::exp(0.0), 1.0);
    assert_eq!(math::exp(f32::NEG_INFINITY), 0.0);
}

#[test]
#[ignore = "exhaustive over 2^32 inputs: run with cargo test --release -- --ignored"]
fn sigmoid_and_tanh_are_within_their_bounds_for_every_f32() {
    // σ over x ≥ 0 and −x together (one f64 e^−|x| gives both exact values: 1/(1+e) and
    // e/(1+e)); tanh over x ≥ 0: it is odd by construction (computed from |x|, the sign
    // copied last), which `the_active_backend_gives_the_scalar_bits_for_every_f32` checks.
    fn chunk(lo: u32, hi: u32) -> [MaxError; 2] {
        let mut max = [MaxError::default(); 2];
        for bits in lo..=hi {
            let x = f32::from_bits(bits);
            let (s, sn, t) = (math::sigmoid(x), math::sigmoid(-x), math::tanh(x));
            if x.is_nan() {
                assert!(s.is_nan() && sn.is_nan() && t.is_nan());
                continue;
            }
            assert!((0.0..=1.0).contains(&s), "σ({x:e}) = {s:e}");
            assert!((0.0..=1.0).contains(&sn), "σ({:e}) = {sn:e}", -x);
            assert!((0.0..=1.0).contains(&t), "tanh({x:e}) = {t:e}");
            if x >= 128.0 {
                // σ(x) is 1 and σ(−x) below 2^-150; tanh is 1.
                assert_eq!((s, sn, t), (1.0, 0.0, 1.0), "at {x:e}");
                continue;
            }
            let xd = f64::from(x);
            let e = (-xd).exp();
            max[0].record(ulp_error(s, 1.0 / (1.0 + e)), x);
            max[0].record(ulp_error(sn, e / (1.0 + e)), -x);
            max[1].record(ulp_error(t, xd.tanh()), x);
        }
        max
    }
    let [s, t] = par_bits(0, 1 << 31, chunk, |a, b| {
        [MaxError::merge(a[0], b[0]), MaxError::merge(a[1], b[1])]
    });
    println!(
        "sigmoid: max {:.3} ulp at {:e}; tanh: max {:.3} ulp at {:e}",
        s.ulps, s.at, t.ulps, t.at
    );
    assert!(s.ulps <= 2.45, "sigmoid: {s:?}");
    assert!(t.ulps <= 2.6, "tanh: {t:?}");
}

/// Everything measured about one derivative over the positive half (the negative half is
/// covered through the symmetry checks).
#[derive(Debug, Clone, Copy, Default)]
struct DerivativeSweep {
    /// Fast form against the exact value, in ulp.
    fast_vs_exact: MaxError,
    /// Fast form against the reference, as a distance between bit patterns.
    fast_vs_reference_bits: u32,
    fast_vs_reference_at: f32,
    /// Reference against the exact value, in ulp.
    reference_vs_exact: MaxError,
    /// Times the reference increased from one positive f32 to the next.
    reference_reversals: u64,
    /// The last non-NaN reference value of the chunk and the first, to check across chunks.
    first_reference: f32,
    last_reference: f32,
}

fn merge_sweeps(a: DerivativeSweep, b: DerivativeSweep) -> DerivativeSweep {
    let boundary = u64::from(b.first_reference > a.last_reference);
    let (bits, at) = if a.fast_vs_reference_bits >= b.fast_vs_reference_bits {
        (a.fast_vs_reference_bits, a.fast_vs_reference_at)
    } else {
        (b.fast_vs_reference_bits, b.fast_vs_reference_at)
    };
    DerivativeSweep {
        fast_vs_exact: MaxError::merge(a.fast_vs_exact, b.fast_vs_exact),
        fast_vs_reference_bits: bits,
        fast_vs_reference_at: at,
        reference_vs_exact: MaxError::merge(a.reference_vs_exact, b.reference_vs_exact),
        reference_reversals: a.reference_reversals + b.reference_reversals + boundary,
        first_reference: a.first_reference,
        last_reference: b.last_reference,
    }
}

/// Checks one derivative over every positive bit pattern `lo..=hi`.
/// `cap` is the maximum (1/4 or 1), `normal_limit` the |x| up to which it must be normal
/// (beyond it: subnormal within one step of the reference, and zero only where it is),
/// `exact` the f64 value computed independently of the reference.
fn sweep_derivative(
    lo: u32,
    hi: u32,
    fast: fn(f32) -> f32,
    reference: fn(f32) -> f32,
    exact: fn(f64) -> f64,
    cap: f32,
    normal_limit: f32,
) -> DerivativeSweep {
    let mut out = DerivativeSweep {
        first_reference: f32::INFINITY,
        last_reference: f32::INFINITY,
        ..DerivativeSweep::default()
    };
    let mut previous = f32::INFINITY;
    for bits in lo..=hi {
        let x = f32::from_bits(bits);
        // The fast forms and the references take |x| first, so the negative half gives the
        // same bits (checked at every exponent by
        // `the_active_backend_gives_the_scalar_bits_for_every_f32`) and is not evaluated.
        let (d, r) = (fast(x), reference(x));
        if x.is_nan() {
            assert!(d.is_nan() && r.is_nan(), "NaN out for NaN in");
            continue;
        }
        assert!(
            d >= 0.0 && d <= cap,
            "fast form out of [0, {cap}] at {x:e}: {d:e}"
        );
        assert!(
            r >= 0.0 && r <= cap,
            "reference out of [0, {cap}] at {x:e}: {r:e}"
        );
        if x <= normal_limit {
            assert!(d.is_normal(), "fast form not normal at {x:e}: {d:e}");
        }
        // Beyond 128 both derivatives are below 2^-150: exactly 0 in f32.
        let truth = if x >= 128.0 { 0.0 } else { exact(f64::from(x)) };
        if truth == 0.0 {
            assert_eq!((d, r), (0.0, 0.0), "at {x:e}");
        }
        // No false zeros: nonzero wherever the correctly rounded value is, and within one
        // subnormal step of it where either is not normal.
        if !(d.is_normal() && r.is_normal()) {
            assert!(
                ulp_distance(d, r) <= 1 && (r == 0.0) == (d == 0.0),
                "fast form {d:e} vs correctly rounded {r:e} at {x:e}"
            );
        }
        out.reference_vs_exact.record(ulp_error(r, truth), x);
        if d.is_normal() {
            out.fast_vs_exact.record(ulp_error(d, truth), x);
            let dist = ulp_distance(d, r);
            if dist > out.fast_vs_reference_bits {
                out.fast_vs_reference_bits = dist;
                out.fast_vs_reference_at = x;
            }
        }
        if out.first_reference == f32::INFINITY {
            out.first_reference = r;
        }
        if r > previous {
            out.reference_reversals += 1;
        }
        previous = r;
    }
    out.last_reference = previous;
    out
}

fn exact_sigmoid_derivative(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    e / ((1.0 + e) * (1.0 + e))
}

fn exact_tanh_derivative(x: f64) -> f64 {
    4.0 * exact_sigmoid_derivative(2.0 * x)
}

fn report_and_check(name: &str, s: DerivativeSweep, fast_bound: f64) {
    println!(
        "{name}: fast form max {:.3} ulp vs exact (at {:e}), max {} ulp vs reference (at {:e}); \
         reference max {:.4} ulp vs exact (at {:e}), {} monotonicity reversals",
        s.fast_vs_exact.ulps,
        s.fast_vs_exact.at,
        s.fast_vs_reference_bits,
        s.fast_vs_reference_at,
        s.reference_vs_exact.ulps,
        s.reference_vs_exact.at,
        s.reference_reversals
    );
    assert!(
        s.fast_vs_reference_bits <= 4,
        "{name}: fast form more than 4 ulp from the reference"
    );
    assert!(
        s.fast_vs_exact.ulps <= fast_bound,
        "{name}: fast form beyond its documented bound"
    );
    assert!(
        s.reference_vs_exact.ulps <= 0.5001,
        "{name}: reference not correctly rounded"
    );
    assert_eq!(
        s.reference_reversals, 0,
        "{name}: reference must be non-increasing in |x|"
    );
}

#[test]
#[ignore = "exhaustive over 2^32 inputs: run with cargo test --release -- --ignored"]
fn sigmoid_derivative_properties_hold_for_every_f32() {
    fn chunk(lo: u32, hi: u32) -> DerivativeSweep {
        sweep_derivative(
            lo,
            hi,
            math::sigmoid_derivative,
            math::sigmoid_derivative_reference,
            exact_sigmoid_derivative,
            0.25,
            87.0,
        )
    }
    let s = par_bits(0, 1 << 31, chunk, merge_sweeps);
    report_and_check("sigmoid'", s, 3.5);
}

#[test]
#[ignore = "exhaustive over 2^32 inputs: run with cargo test --release -- --ignored"]
fn tanh_derivative_properties_hold_for_every_f32() {
    fn chunk(lo: u32, hi: u32) -> DerivativeSweep {
        sweep_derivative(
            lo,
            hi,
            math::tanh_derivative,
            math::tanh_derivative_reference,
            exact_tanh_derivative,
            1.0,
            44.36,
        )
    }
    let s = par_bits(0, 1 << 31, chunk, merge_sweeps);
    report_and_check("tanh'", s, 3.5);
}

/// Mismatches over the bit patterns `lo..hi` (positive) and their negations: between the
/// active backend's slice kernels and the scalar functions for σ', tanh' and tanh (between
/// them every branch of the vector exp and expm1), NaN payloads aside, and in the
/// symmetries σ'(−x) = σ'(x), tanh'(−x) = tanh'(x) and tanh(−x) = −tanh(x), bit for bit. The symmetries let the sweeps above
/// evaluate the positive half only.
fn backend_mismatches(lo: u32, hi: u32) -> u64 {
    use gradguard::{kernels, Sigmoid, Tanh};
    const BLOCK: usize = 4096;
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let mut z = [vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]];
    let mut d = [vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]];
    let mut t = [vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]];
    let mut dt = [vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]];
    let mut mismatches = 0u64;
    let mut start = u64::from(lo);
    while start < u64::from(hi) {
        let n = (u64::from(hi) - start).min(BLOCK as u64) as usize;
        let [positive, negative] = &mut z;
        for (k, (p, q)) in positive[..n].iter_mut().zip(&mut negative[..n]).enumerate() {
            let x = f32::from_bits((start + k as u64) as u32);
            (*p, *q) = (x, -x);
        }
        for side in 0..2 {
            kernels::activation_derivative(&Sigmoid, &z[side][..n], &mut d[side][..n]);
            kernels::activation_derivative(&Tanh, &z[side][..n], &mut dt[side][..n]);
            kernels::activation_forward(&Tanh, &z[side][..n], &mut t[side][..n]);
            for k in 0..n {
                let x = z[side][k];
                mismatches += u64::from(!same(d[side][k], math::sigmoid_derivative(x)));
                mismatches += u64::from(!same(dt[side][k], math::tanh_derivative(x)));
                mismatches += u64::from(!same(t[side][k], math::tanh(x)));
            }
        }
        for k in 0..n {
            mismatches += u64::from(!same(d[1][k], d[0][k]));
            mismatches += u64::from(!same(dt[1][k], dt[0][k]));
            mismatches += u64::from(!same(t[1][k], -t[0][k]));
        }
        start += n as u64;
    }
    mismatches
}

/// The vector kernels meet the scalar bounds because they are the scalar results: the active
/// backend (the best this machine has, or `GRADGUARD_BACKEND`'s) gives the scalar bits of σ'
/// tanh' and tanh for every f32, and they are symmetric in x bit for bit. A few minutes per
/// backend; for another one run e.g.
/// `GRADGUARD_BACKEND=sse2 cargo test --release --test exhaustive -- --ignored active_backend`.
#[test]
#[ignore = "exhaustive over 2^32 inputs: run with cargo test --release -- --ignored"]
fn the_active_backend_gives_the_scalar_bits_for_every_f32() {
    let backend = gradguard::kernels::backend();
    let mismatches = par_bits(0, 1 << 31, backend_mismatches, |a, b| a + b);
    println!(
        "{}: {mismatches} mismatches in σ', tanh', tanh and their symmetry over 2^32 inputs",
        backend.name()
    );
    assert_eq!(mismatches, 0, "{}", backend.name());
}

/// `init::standard_normal` computes cos(2πu) with its own copy of `libm::cosf`'s branches
/// for [0, 9π/4] (without the general argument reduction a firmware would otherwise link):
/// for every one of the 2^24 values of u it can draw, the normal sample equals Box–Muller
/// with `libm::cosf`, bit for bit.
#[test]
#[ignore]
fn standard_normal_equals_box_muller_with_libm_cosf_for_every_u2() {
    use gradguard::init::standard_normal;
    use rand_xoshiro::rand_core::{Infallible, TryRng};
    /// Yields u1's bits, then u2's.
    struct Two([u32; 2], usize);
    impl TryRng for Two {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            self.1 += 1;
            Ok(self.0[(self.1 - 1) % 2])
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            unreachable!("standard_normal draws u32s")
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Infallible> {
            unreachable!("standard_normal draws u32s")
        }
    }
    let mismatches = par_bits(
        0,
        1 << 24,
        |lo, hi| {
            let u1_bits = 0x8000_0000u32; // u1 = (2^23 + 1)·2^-24: √(−2 ln u1) ≈ 1.18
            let u1 = ((u1_bits >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0);
            let radius = libm::sqrtf(-2.0 * libm::logf(u1));
            (lo..=hi)
                .filter(|&k| {
                    let u2 = k as f32 * (1.0 / 16_777_216.0);
                    let want = radius * libm::cosf(core::f32::consts::TAU * u2);
                    let got = standard_normal(&mut Two([u1_bits, k << 8], 0));
                    got.to_bits() != want.to_bits()
                })
                .count()
        },
        |a, b| a + b,
    );
    assert_eq!(mismatches, 0);
}
