//! Scalar elementary functions with written-down error bounds.
//!
//! Everything here is pure `f32` arithmetic (no `f64`, no fused multiply-add, no table), so it
//! runs unchanged on a soft-float Cortex-M0+, and a SIMD kernel that performs the same
//! operations in the same order reproduces it bit for bit. The only exceptions are the
//! `*_reference` functions, which evaluate in `f64` and round once; they are the yardstick for
//! tests and for users who want the last half ulp, not the kernel path.
//!
//! Error bounds are in ulp (units in the last place of the `f32` result, counted as the
//! distance between bit patterns, so they stay meaningful for subnormal results) and were
//! measured exhaustively over every `f32` bit pattern by the `#[ignore]`d tests in
//! `tests/exhaustive.rs` (`cargo test --release -- --ignored`).
//!
//! ```
//! use gradguard::math;
//! // The textbook from-output form returns a false zero where the true derivative
//! // (about 6e-8) is a perfectly normal f32; the pre-activation form does not.
//! let s = math::sigmoid(17.0);
//! assert_eq!(math::sigmoid_derivative_from_output(s), 0.0);
//! let d = math::sigmoid_derivative(17.0);
//! assert!(d.is_normal() && (d - 4.14e-8).abs() < 1e-9);
//! ```

use crate::lanes::Lanes;

/// log2(e), rounded to f32.
const LOG2E: f32 = core::f32::consts::LOG2_E;
/// High part of ln 2 with 9 significant bits, so `n * LN2_HI` is exact for |n| ≤ 2^15.
const LN2_HI: f32 = 0.693_359_4;
/// ln 2 − `LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds an f32 of magnitude < 2^22 to an integer (ties to even).
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this, e^x < 2^-150 rounds to +0.
const EXP_MIN_ARG: f32 = -104.0;
/// Above this, e^x > f32::MAX rounds to +∞.
const EXP_MAX_ARG: f32 = 89.0;
/// Below this magnitude `expm1` uses its polynomial.
const EXPM1_POLY_LIMIT: f32 = core::f32::consts::LN_2;

/// e^x.
///
/// Cody–Waite reduction x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 polynomial for e^r
/// (Cephes `expf` coefficients) and a scale by 2^n done as two exact power-of-two products,
/// so a subnormal result is rounded once, not twice. No branch on the value except the
/// clamp of the argument, so the same steps vectorise.
///
/// * Error: **at most 1 ulp** against the exact e^x over every f32 whose result is finite;
///   measured maximum **0.990 ulp** (at x = 70.40), exhaustively by
///   `tests/exhaustive.rs::exp_is_within_its_bound_for_every_f32`, which enforces 1.0.
/// * e^0 = 1 exactly; e^-∞ = +0; e^+∞ = +∞; NaN in gives NaN out.
///
/// ```
/// assert_eq!(gradguard::math::exp(0.0), 1.0);
/// assert!((gradguard::math::exp(-1.0) - 0.367_879_44).abs() < 1e-7);
/// assert!(gradguard::math::exp(-100.0) > 0.0); // subnormal, not a false zero
/// ```
#[inline(always)]
#[must_use]
pub fn exp(x: f32) -> f32 {
    exp_lanes(x)
}

/// [`exp`] on any [`Lanes`] type: the one body the scalar and every SIMD kernel run.
///
/// ```
/// assert_eq!(gradguard::math::exp_lanes(0.0_f32), 1.0);
/// ```
#[inline(always)]
pub fn exp_lanes<R: Lanes>(x: R) -> R {
    exp_times_pow2::<R, 0>(x)
}

/// e^x · 2^K, rounded once: the power of two joins the exact scaling at the end of [`exp`],
/// so a result that is normal although e^x alone would be subnormal keeps its precision.
/// For K = 0 this is [`exp`] (the same operations).
#[inline(always)]
fn exp_times_pow2<R: Lanes, const K: i32>(x: R) -> R {
    // `clamp` passes NaN through, which then flows through the arithmetic below. Below
    // the lower clamp e^x·2^K < 2^-150 rounds to +0 (K ≤ 2 moves it by at most 2·ln 2).
    let min_arg = if K == 0 {
        EXP_MIN_ARG
    } else {
        EXP_MIN_ARG - 2.0
    };
    let x = x.clamp(min_arg, EXP_MAX_ARG);
    let t = x * R::splat(LOG2E) + R::splat(ROUND_MAGIC);
    let n_f = t - R::splat(ROUND_MAGIC);
    let r = x - n_f * R::splat(LN2_HI);
    let r = r - n_f * R::splat(LN2_LO);
    let r2 = r * r;
    let q = R::splat(1.987_569_1e-4);
    let q = q * r + R::splat(1.398_199_9e-3);
    let q = q * r + R::splat(8.333_452e-3);
    let q = q * r + R::splat(4.166_579_6e-2);
    let q = q * r + R::splat(1.666_666_5e-1);
    let q = q * r + R::splat(0.5); // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let p = q * r2 + r + R::splat(1.0);
    // n ∈ [-153, 129] is in the low bits of `t`; 2^n = 2^n1 · 2^n2 with n1, n2 ∈ [-77, 65],
    // both normal, so the first product is exact. Adding K to `t` (exact) adds K to n.
    let t = if K == 0 { t } else { t + R::splat(K as f32) };
    p.mul_pow2_rounded(t)
}

/// e^x − 1 without cancellation near 0.
///
/// For |x| < ln 2 a degree-10 Taylor polynomial (truncation error below 2^-30 relative),
/// otherwise [`exp`]`(x) − 1`: for x ≤ −ln 2 the subtraction is exact (Sterbenz) and the
/// result is at least as large as e^x, so exp's error is not magnified.
///
/// * Error: measured maximum **1.701 ulp** over every f32 (at x = 1.044; 1.32 ulp for
///   x ≤ 0, the side tanh and ELU use), exhaustively by
///   `exp_is_within_its_bound_for_every_f32`, which enforces 1.75.
/// * expm1(±0) = +0 (x + x²·c rounds −0 up), expm1(-∞) = −1, NaN in gives NaN out.
///
/// ```
/// let x = 1e-10_f32;
/// assert_eq!(gradguard::math::expm1(x), x); // exp(x) - 1.0 would give 0
/// ```
#[inline(always)]
#[must_use]
pub fn expm1(x: f32) -> f32 {
    expm1_lanes(x)
}

/// [`expm1`] on any [`Lanes`] type.
///
/// ```
/// assert_eq!(gradguard::math::expm1_lanes(1e-10_f32), 1e-10);
/// ```
#[inline(always)]
pub fn expm1_lanes<R: Lanes>(x: R) -> R {
    expm1_from_exp(x, exp_lanes(x))
}

/// [`expm1`] given `e` = [`exp`]`(x)`, for callers that need both.
#[inline(always)]
fn expm1_from_exp<R: Lanes>(x: R, e: R) -> R {
    let small = {
        // Horner in x: x + x²(1/2 + x(1/6 + x(1/24 + ...))), Taylor through x^10/10!.
        let c = R::splat(1.0 / 3_628_800.0);
        let c = c * x + R::splat(1.0 / 362_880.0);
        let c = c * x + R::splat(1.0 / 40_320.0);
        let c = c * x + R::splat(1.0 / 5_040.0);
        let c = c * x + R::splat(1.0 / 720.0);
        let c = c * x + R::splat(1.0 / 120.0);
        let c = c * x + R::splat(1.0 / 24.0);
        let c = c * x + R::splat(1.0 / 6.0);
        let c = c * x + R::splat(0.5);
        c * (x * x) + x
    };
    // NaN fails the comparison and takes `e - 1`, which is NaN.
    R::select(
        x.abs().lt(R::splat(EXPM1_POLY_LIMIT)),
        small,
        e - R::splat(1.0),
    )
}

/// The logistic function σ(x) = 1 / (1 + e^-x), evaluated stably.
///
/// Uses e = e^-|x| ≤ 1 only (never the exponential of a large positive number):
/// σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0.
///
/// * Error: measured maximum **2.402 ulp** against the exact value over every f32 (at
///   x = −4.157), exhaustively by `sigmoid_and_tanh_are_within_their_bounds_for_every_f32`,
///   which enforces 2.45.
/// * σ(0) = 0.5 exactly, σ(+∞) = 1, σ(−∞) = +0, NaN in gives NaN out.
///
/// ```
/// assert_eq!(gradguard::math::sigmoid(0.0), 0.5);
/// assert!(gradguard::math::sigmoid(-100.0) > 0.0); // 3.7e-44, subnormal but not zero
/// ```
#[inline(always)]
#[must_use]
pub fn sigmoid(x: f32) -> f32 {
    sigmoid_lanes(x)
}

/// [`sigmoid`] on any [`Lanes`] type.
///
/// ```
/// assert_eq!(gradguard::math::sigmoid_lanes(0.0_f32), 0.5);
/// ```
#[inline(always)]
pub fn sigmoid_lanes<R: Lanes>(x: R) -> R {
    let one = R::splat(1.0);
    let e = exp_lanes(-x.abs());
    // `x >= 0` is false for NaN, which then takes `e` = NaN.
    let numerator = R::select(x.ge(R::splat(0.0)), one, e);
    numerator / (one + e)
}

/// σ'(x) = σ(x)·(1 − σ(x)), computed from the **pre-activation** x (the fast form the kernels
/// use).
///
/// Evaluates s = σ(−|x|) ≤ 1/2 and returns s·(1 − s). Because s ≤ 1/2, the exact product is
/// at most 1/4, and rounding is monotone, so the result never exceeds 1/4; because it uses
/// |x|, σ'(x) and σ'(−x) are the same bits; because s is computed directly (not as 1 − σ(x))
/// the result is a normal f32 down to 1.2e-38, i.e. for every |x| ≤ 87.
///
/// * Error wherever the result is normal: at most **3 ulp** (bit distance) from
///   [`sigmoid_derivative_reference`] and measured maximum **3.455 ulp** from the exact value
///   (at x = 2.646), exhaustively by `sigmoid_derivative_properties_hold_for_every_f32`,
///   which enforces 3 and 3.5.
/// * σ'(0) = 0.25 exactly, σ'(±∞) = 0, NaN in gives NaN out.
///
/// ```
/// use gradguard::math::sigmoid_derivative as d;
/// assert_eq!(d(0.0), 0.25);
/// assert_eq!(d(3.0).to_bits(), d(-3.0).to_bits());
/// assert!(d(87.0).is_normal());
/// ```
#[inline(always)]
#[must_use]
pub fn sigmoid_derivative(x: f32) -> f32 {
    sigmoid_derivative_lanes(x)
}

/// [`sigmoid_derivative`] on any [`Lanes`] type.
///
/// ```
/// assert_eq!(gradguard::math::sigmoid_derivative_lanes(0.0_f32), 0.25);
/// ```
#[inline(always)]
pub fn sigmoid_derivative_lanes<R: Lanes>(x: R) -> R {
    let one = R::splat(1.0);
    let e = exp_lanes(-x.abs());
    let s = e / (one + e);
    s * (one - s)
}

/// ([`sigmoid_lanes`]`(x)`, [`sigmoid_derivative_lanes`]`(x)`) bit for bit, with one
/// exponential instead of two: both evaluate e = e^−|x| and 1 + e the same way, σ is
/// 1/(1 + e) for x ≥ 0 and e/(1 + e) = s otherwise, and σ' is s·(1 − s).
#[inline(always)]
pub(crate) fn sigmoid_and_derivative_lanes<R: Lanes>(x: R) -> (R, R) {
    let one = R::splat(1.0);
    let e = exp_lanes(-x.abs());
    let denominator = one + e;
    let s = e / denominator;
    // `x >= 0` is false for NaN, which then takes `s` = NaN, as `sigmoid_lanes` does.
    let value = R::select(x.ge(R::splat(0.0)), one / denominator, s);
    (value, s * (one - s))
}

/// tanh(x), odd-symmetric, without cancellation near 0 and accurately rounded near ±1.
///
/// With e = e^(−2|x|) computed once:
/// * |x| < 2^-12: x itself (the next term, x³/3, is below a quarter ulp);
/// * |x| < 0.55: −m / (2 + m) with m = e^(−2|x|) − 1 from the [`expm1`] polynomial (or
///   e − 1 where that is exact enough), so small results keep their relative accuracy;
/// * otherwise 1 − 2e/(1 + e): the subtracted term is small and accurate, so values near
///   ±1 are rounded essentially once (tanh(9.0) is 0.99999994, not 1).
///
/// * Error: measured maximum **2.534 ulp** against the exact value over every f32 (at
///   x = 0.254), exhaustively by `sigmoid_and_tanh_are_within_their_bounds_for_every_f32`,
///   which enforces 2.6.
/// * tanh(±0) = ±0, tanh(±∞) = ±1, NaN in gives NaN out.
///
/// ```
/// assert_eq!(gradguard::math::tanh(0.0), 0.0);
/// assert_eq!(gradguard::math::tanh(-20.0), -1.0);
/// assert_eq!(gradguard::math::tanh(1e-30), 1e-30);
/// assert!(gradguard::math::tanh(9.0) < 1.0);
/// ```
#[inline(always)]
#[must_use]
pub fn tanh(x: f32) -> f32 {
    tanh_lanes(x)
}

/// [`tanh`] on any [`Lanes`] type.
///
/// ```
/// assert_eq!(gradguard::math::tanh_lanes(-20.0_f32), -1.0);
/// ```
#[inline(always)]
pub fn tanh_lanes<R: Lanes>(x: R) -> R {
    let (one, two) = (R::splat(1.0), R::splat(2.0));
    let a = x.abs();
    let e = exp_lanes(-two * a);
    let m = expm1_from_exp(-two * a, e);
    let near_zero = -m / (two + m);
    let near_one = one - two * e / (one + e);
    // NaN fails both comparisons and takes `near_one`, which is NaN.
    let t = R::select(
        a.lt(R::splat(2.441_406_3e-4)),
        a,
        R::select(a.lt(R::splat(0.55)), near_zero, near_one),
    );
    t.or_sign_of(x)
}

/// tanh'(x) = 1 − tanh²(x), computed from the pre-activation as 4·σ'(2x) (an exact identity).
///
/// With s = e/(1+e) and e = e^(−2|x|) it evaluates 4s·(1 − s) as s₄·(1 − s₄/4), where
/// s₄ = 4e/(1 + e) and 4e comes from [`exp`] with the factor 4 joined to its final exact
/// scaling. Wherever e is normal every step is 4× the corresponding step of
/// [`sigmoid_derivative`]`(2x)` (scaling by 4 commutes with rounding), so the results are
/// 4·σ'(2x) bit for bit; where e is subnormal (|x| > 43.7) 4·σ'(2x) would carry σ'(2x)'s
/// rounding to a subnormal and be 0 from |x| = 51.99, while this form stays a normal f32 up to
/// |x| = 44.36 and nonzero up to 52.68, as the true value does.
/// The result is in [0, 1], symmetric bit for bit, tanh'(0) = 1 exactly.
///
/// * Error wherever the result is normal: at most **3 ulp** (bit distance) from
///   [`tanh_derivative_reference`] and measured maximum **3.455 ulp** from the exact value
///   (at x = 1.323), exhaustively by `tanh_derivative_properties_hold_for_every_f32`, which
///   enforces 3 and 3.5.
///
/// ```
/// use gradguard::math::tanh_derivative as d;
/// assert_eq!(d(0.0), 1.0);
/// assert!(d(10.0) > 0.0); // 1 - tanh(10)^2 would be exactly 0
/// assert!(d(44.3).is_normal());
/// assert!(d(52.3) > 0.0); // subnormal, 4·σ'(104.6) would be 0
/// ```
#[inline(always)]
#[must_use]
pub fn tanh_derivative(x: f32) -> f32 {
    tanh_derivative_lanes(x)
}

/// [`tanh_derivative`] on any [`Lanes`] type.
///
/// ```
/// assert_eq!(gradguard::math::tanh_derivative_lanes(0.0_f32), 1.0);
/// ```
#[inline(always)]
pub fn tanh_derivative_lanes<R: Lanes>(x: R) -> R {
    let (one, quarter) = (R::splat(1.0), R::splat(0.25));
    let e4 = exp_times_pow2::<R, 2>(-(R::splat(2.0) * x).abs());
    let s4 = e4 / (one + e4 * quarter);
    s4 * (one - s4 * quarter)
}

/// σ'(x) from the *output* s = σ(x) as `s * (1 - s)`: the cheap textbook form.
///
/// **Returns false zeros.** For x ≥ 16.64 (= 24·ln 2, where 1 + e^−x rounds to 1), σ(x)
/// rounds to 1 in f32, so `1 - s` is 0 and this
/// returns exactly 0 although the true σ'(x) ≈ 6e-8 (at x = 16.64) is a normal f32. For
/// large negative x it is accurate. Kept for comparison and for code that only has the
/// output; the layers use [`sigmoid_derivative`].
///
/// ```
/// use gradguard::math::{sigmoid, sigmoid_derivative_from_output};
/// assert_eq!(sigmoid_derivative_from_output(sigmoid(16.64)), 0.0);
/// assert!(sigmoid_derivative_from_output(sigmoid(16.6)) > 0.0);
/// ```
#[inline(always)]
#[must_use]
pub fn sigmoid_derivative_from_output(s: f32) -> f32 {
    s * (1.0 - s)
}

/// tanh'(x) from the *output* t = tanh(x) as `1 - t * t`: the cheap textbook form.
///
/// **Returns false zeros.** For |x| ≥ 9.011 (= 13·ln 2, where 1 − tanh(x) drops below half
/// an ulp of 1), tanh(x) rounds to ±1 in f32, so this returns exactly 0 although the true
/// derivative ≈ 6e-8 there is a normal f32. Use [`tanh_derivative`] instead.
///
/// ```
/// use gradguard::math::{tanh, tanh_derivative_from_output};
/// assert_eq!(tanh_derivative_from_output(tanh(9.02)), 0.0);
/// assert!(gradguard::math::tanh_derivative(9.01) > 5e-8);
/// ```
#[inline(always)]
#[must_use]
pub fn tanh_derivative_from_output(t: f32) -> f32 {
    1.0 - t * t
}

/// Reference σ'(x): e/(1+e)² with e = e^-|x| evaluated in `f64` and rounded to f32 once.
///
/// Measured exhaustively (`tests/exhaustive.rs`): at most **0.5000 ulp** from the exact
/// value over every f32 (correctly rounded), non-increasing in |x| (0 reversals), symmetric,
/// at most 1/4. Uses software f64 on a Cortex-M: meant for tests and host tools, not for kernels.
///
/// ```
/// use gradguard::math::sigmoid_derivative_reference as r;
/// assert_eq!(r(0.0), 0.25);
/// assert!(r(1.0) <= r(0.5));
/// ```
#[must_use]
pub fn sigmoid_derivative_reference(x: f32) -> f32 {
    let e = libm::exp(-libm::fabs(f64::from(x)));
    let d = 1.0 + e;
    (e / (d * d)) as f32
}

/// Reference tanh'(x): 4e/(1+e)² with e = e^-2|x| in `f64`, rounded once (see
/// [`sigmoid_derivative_reference`] for its properties).
///
/// ```
/// assert_eq!(gradguard::math::tanh_derivative_reference(0.0), 1.0);
/// ```
#[must_use]
pub fn tanh_derivative_reference(x: f32) -> f32 {
    let e = libm::exp(-2.0 * libm::fabs(f64::from(x)));
    let d = 1.0 + e;
    (4.0 * e / (d * d)) as f32
}
