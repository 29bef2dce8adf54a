//! The kernels: every loop over arrays in gradguard lives below this module.
//!
//! Layers, losses and optimisers call only the functions here. Each one runs on the active
//! [`Backend`] — AVX-512F, AVX2+FMA or SSE2 on x86_64 (chosen at run time by CPUID, no std
//! needed), NEON on aarch64, simd128 on wasm32, scalar everywhere else — see [`backend`],
//! [`set_backend`] and the build-time variable `GRADGUARD_BACKEND`.
//!
//! What a backend may change: only the three matrix products. [`dense_forward`] sums its dot
//! products in a different order, and on backends with FMA ([`Backend::fuses_multiply_add`])
//! [`dense_backward_input`] and [`dense_backward_params`] fuse their multiply-adds (in the
//! reference order); all three stay within [`matrix_error_bound`] of the scalar
//! reference (the [`Backend::Scalar`] kernels, in the order each function documents), and the backward ones are bit-identical to it on SSE2 and simd128. Every other
//! kernel — activations and derivatives, softmax and losses, optimiser updates, health
//! statistics, the bias gradient, batch normalization's statistics, normalisation and
//! backward — gives the same bits on every backend (NaN payloads
//! aside, which Rust leaves unspecified).
//!
//! Slices of different lengths are processed up to the shortest one: a kernel never panics.
//!
//! ```
//! let w = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]; // OUT = 3, IN = 2
//! let b = [0.5, 0.0, -1.0];
//! let x = [[1.0, 1.0]];                           // batch of 1
//! let mut z = [[0.0; 3]];
//! gradguard::kernels::dense_forward(&w, &b, &x, &mut z);
//! assert_eq!(z, [[3.5, 7.0, 10.0]]);
//! ```

#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[allow(unsafe_code)]
mod cortex_m;
#[allow(unsafe_code)]
mod dispatch;
#[allow(unsafe_code)]
mod fpu;
// Without a SIMD backend only the elementwise bodies are instantiated (at f32).
#[cfg_attr(not(gradguard_simd), allow(dead_code))]
pub(crate) mod generic;
#[cfg(gradguard_neon)]
#[allow(unsafe_code)]
mod neon;
mod rows;
pub(crate) mod scalar;
#[cfg(test)]
mod tests;
#[cfg(gradguard_simd128)]
#[allow(unsafe_code)]
mod wasm;
#[cfg(gradguard_sse2)]
#[allow(unsafe_code)]
mod x86;

use dispatch::dispatch;
pub(crate) use dispatch::VECTOR_BACKENDS;
use generic::{AdamStep, Backward, Derivative, ExpShifted, Value};
pub(crate) use generic::{BackwardTally, Magnitudes, Moments};

pub use dispatch::{backend, set_backend, Backend};
pub use fpu::{subnormal_mode, SubnormalMode};
pub use rows::{
    binary_cross_entropy_with_logits_row, softmax_backward_row, softmax_cross_entropy_row,
    softmax_row, squared_error_row,
};

use crate::elementwise::Elementwise;

/// Whether a backward pass overwrites the gradient buffers or adds to them.
///
/// `Overwrite` is what one optimiser step per batch wants. `Accumulate` sums gradients over
/// several backward passes (micro-batches on a device too small for the whole batch); zero
/// the gradients with [`crate::Zeroed::set_zero`] before the first one.
///
/// ```
/// use gradguard::GradMode;
/// assert_ne!(GradMode::Overwrite, GradMode::Accumulate);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradMode {
    /// dW = dYᵀ·X, db = Σ dY.
    #[default]
    Overwrite,
    /// dW += dYᵀ·X, db += Σ dY.
    Accumulate,
}

/// Dense forward for a batch: `z[s][o] = Σ_i w[o][i]·x[s][i] + b[o]` (W is `OUT × IN`,
/// row-major).
///
/// On a SIMD backend each dot product is summed as partial sums along the inputs, with
/// fused multiply-adds where the instruction set has them, so the result may differ from
/// the scalar reference ([`Backend::Scalar`]: each dot product summed from `i = 0` upwards
/// starting at +0.0, then the bias added) by up to
/// [`matrix_error_bound`]`(IN, Σ|w·x| + |b|)`.
///
/// ```
/// let mut z = [[0.0; 1]; 2];
/// gradguard::kernels::dense_forward(&[[2.0, -1.0]], &[1.0], &[[1.0, 1.0], [0.0, 3.0]], &mut z);
/// assert_eq!(z, [[2.0], [-2.0]]);
/// ```
#[inline]
pub fn dense_forward<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    z: &mut [[f32; OUT]; B],
) {
    dispatch!(scalar::dense_forward(w, b, x, z), dense_forward(w, b, x, z))
}

/// How far a matrix kernel on any backend may be from the scalar reference, for one
/// output that sums `terms` products plus one more term (the bias, or the old value when
/// accumulating), whose magnitudes add up to `sum_abs` (computed exactly, e.g. in f64):
/// `2·γ(terms + 1)·sum_abs + (terms + 1)·2^-150`, with γ(n) = n·u/(1 − n·u), u = 2^-24.
///
/// * [`dense_forward`]: terms = IN, sum_abs = Σ_i |w_i·x_i| + |b|.
/// * [`dense_backward_input`]: terms = OUT, sum_abs = Σ_o |dz_o·w_oi|.
/// * [`dense_backward_params`] (dW): terms = B, sum_abs = Σ_s |dz_so·x_si| (+ |old dW|).
///
/// Both results are sums of the same terms in some order with at most terms + 1 rounded
/// additions (and products, fused or not), so each is within γ(terms + 1)·sum_abs of the
/// exact value (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1) plus half a
/// subnormal ulp per operation. Valid when no partial sum overflows (sum_abs < f32::MAX);
/// beyond that both results are ±∞ or NaN, possibly different ones. `tests/backends.rs`
/// enforces it on every backend.
///
/// ```
/// use gradguard::kernels::matrix_error_bound;
/// assert!(matrix_error_bound(128, 1.0) < 1.6e-5);
/// assert_eq!(matrix_error_bound(usize::MAX, 1.0), f64::INFINITY); // 2^24 terms or more
/// ```
#[must_use]
pub fn matrix_error_bound(terms: usize, sum_abs: f64) -> f64 {
    let n = terms as f64 + 1.0;
    let u = f64::from(f32::EPSILON) / 2.0;
    if n * u >= 1.0 {
        // γ(n) is only defined for n·u < 1 (2^24 terms): no bound.
        return f64::INFINITY;
    }
    let gamma = n * u / (1.0 - n * u);
    2.0 * gamma * sum_abs + n * f64::from(f32::from_bits(1)) / 2.0
}

/// Dense backward to the input: `dx[s][i] = Σ_o dz[s][o]·w[o][i]` (always overwrites `dx`).
///
/// Order: `dx` starts at +0.0 and the rows of `w` are added for `o = 0, 1, …` on every
/// backend; each term is a rounded product and a rounded sum, except on backends with FMA,
/// which fuse them (within [`matrix_error_bound`] of the [`Backend::Scalar`] result).
///
/// ```
/// let mut dx = [[9.0; 2]];
/// gradguard::kernels::dense_backward_input(&[[1.0, 2.0], [3.0, 4.0]], &[[1.0, -1.0]], &mut dx);
/// assert_eq!(dx, [[-2.0, -2.0]]);
/// ```
#[inline]
pub fn dense_backward_input<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    dx: &mut [[f32; IN]; B],
) {
    dispatch!(
        scalar::dense_backward_input(w, dz, dx),
        dense_backward_input(w, dz, dx)
    )
}

/// Dense backward to the parameters: `dw[o][i] (+)= Σ_s dz[s][o]·x[s][i]`,
/// `db[o] (+)= Σ_s dz[s][o]`.
///
/// Order: with [`GradMode::Overwrite`] both start at +0.0; samples are added for
/// `s = 0, 1, …` on every backend. db is bit-identical to the [`Backend::Scalar`] result
/// everywhere, dW on backends without FMA (otherwise within [`matrix_error_bound`]).
///
/// ```
/// use gradguard::GradMode;
/// let (mut dw, mut db) = ([[0.0; 2]; 1], [0.0; 1]);
/// let dz = [[2.0], [1.0]];
/// let x = [[1.0, 0.5], [4.0, 0.0]];
/// gradguard::kernels::dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
/// assert_eq!((dw, db), ([[6.0, 1.0]], [3.0]));
/// ```
#[inline]
pub fn dense_backward_params<const IN: usize, const OUT: usize, const B: usize>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
    dw: &mut [[f32; IN]; OUT],
    db: &mut [f32; OUT],
    mode: GradMode,
) {
    dispatch!(
        scalar::dense_backward_params(dz, x, dw, db, mode),
        dense_backward_params(dz, x, dw, db, mode)
    )
}

/// `out[k] = f(z[k])` for an elementwise activation, through its
/// [`Elementwise::value_lanes`] (bit-identical on every backend).
///
/// ```
/// let mut a = [0.0; 3];
/// gradguard::kernels::activation_forward(&gradguard::Relu, &[1.0, -2.0, 3.0], &mut a);
/// assert_eq!(a, [1.0, 0.0, 3.0]);
/// ```
#[inline]
pub fn activation_forward<A: Elementwise>(activation: &A, z: &[f32], out: &mut [f32]) {
    let f = Value(activation);
    dispatch!(
        generic::map::<f32, _>(&f, z, &[], &[], out),
        map(&f, z, &[], &[], out)
    )
}

/// `dz[k] = dy[k] · f'(z[k])` for an elementwise activation (bit-identical on every backend).
///
/// ```
/// let mut dz = [0.0; 2];
/// gradguard::kernels::activation_backward(&gradguard::Relu, &[1.0, -1.0], &[0.5, 0.5], &mut dz);
/// assert_eq!(dz, [0.5, 0.0]);
/// ```
#[inline]
pub fn activation_backward<A: Elementwise>(activation: &A, z: &[f32], dy: &[f32], dz: &mut [f32]) {
    let f = Backward(activation);
    dispatch!(
        generic::map::<f32, _>(&f, z, dy, &[], dz),
        map(&f, z, dy, &[], dz)
    )
}

/// `d[k] = f'(z[k])` for an elementwise activation (bit-identical on every backend).
///
/// ```
/// let mut d = [0.0; 2];
/// gradguard::kernels::activation_derivative(&gradguard::Sigmoid, &[0.0, 100.0], &mut d);
/// assert_eq!(d[0], 0.25);
/// assert!(d[1] > 0.0); // 3.7e-44: subnormal, not a false zero
/// ```
#[inline]
pub fn activation_derivative<A: Elementwise>(activation: &A, z: &[f32], d: &mut [f32]) {
    let f = Derivative(activation);
    dispatch!(
        generic::map::<f32, _>(&f, z, &[], &[], d),
        map(&f, z, &[], &[], d)
    )
}

/// `out[k] = e^(z[k] − m)`.
#[inline]
pub(crate) fn exp_shifted(z: &[f32], m: f32, out: &mut [f32]) {
    let f = ExpShifted(m);
    dispatch!(
        generic::map::<f32, _>(&f, z, &[], &[], out),
        map(&f, z, &[], &[], out)
    )
}

/// `(max |v|, smallest nonzero |v|)` of `values` (NaN ignored; identical on every backend).
#[inline]
pub(crate) fn extremes(values: &[f32]) -> (f32, f32) {
    dispatch!(out_of_line::extremes(values), extremes(values))
}

/// The statistics of a tensor in one pass over memory (see [`generic::moments`]): counts
/// and extremes identical on every backend, sums per lane.
#[inline]
pub(crate) fn moments(values: &[f32], scale_exponent: i32) -> Moments {
    dispatch!(
        out_of_line::moments(values, scale_exponent),
        moments_full(values, scale_exponent)
    )
}

/// [`moments`] in one pass at a fixed scale 2^`scale_exponent` taken from an a-priori bound
/// (see [`generic::moments_at_scale`]: the caller checks the maximum against the window).
#[inline]
pub(crate) fn moments_at_scale(values: &[f32], scale_exponent: i32) -> Moments {
    dispatch!(
        out_of_line::moments(values, scale_exponent),
        moments_at_scale(values, scale_exponent)
    )
}

/// [`moments_at_scale`] with the sums of |v| itself (scale 2^0): one multiply less per
/// vector, for values whose sums the caller then checks (see `health::sums_fit`).
/// `None` on the one-lane path, whose one pass adapts its scale anyway.
#[inline]
pub(crate) fn moments_unscaled(values: &[f32]) -> Option<Moments> {
    dispatch!(
        {
            let _ = values;
            None
        },
        moments_unscaled(values)
    )
}

/// Σ s² at the scale 2^`scale_exponent`, and the smallest nonzero |v| if `smallest` (else
/// reported as 0): ‖W‖ and the dX screen's bound (a first layer computes no dX, so it
/// skips the smallest magnitude). No counts, maximum or Σ|v|; the caller checks the sum
/// (see `health::sums_fit`).
#[inline]
pub(crate) fn norm_at_scale(values: &[f32], scale_exponent: i32, smallest: bool) -> Moments {
    dispatch!(
        out_of_line::norm(values, scale_exponent, smallest),
        norm_at_scale(values, scale_exponent, smallest)
    )
}

/// [`norm_at_scale`] unscaled (scale 2^0, no multiply); `None` on the one-lane path.
#[inline]
pub(crate) fn norm_unscaled(values: &[f32], smallest: bool) -> Option<Moments> {
    dispatch!(
        {
            let _ = (values, smallest);
            None
        },
        norm_unscaled(values, smallest)
    )
}

/// `(Σ s, Σ s²)` with s = |v|·`inverse_scale` for finite values, four partial sums per lane
/// (the last bits depend on the backend); non-finite if some value is.
#[inline]
pub(crate) fn scaled_sums_finite(values: &[f32], inverse_scale: f32) -> (f32, f32) {
    dispatch!(
        out_of_line::scaled_sums_finite(values, inverse_scale),
        scaled_sums_finite(values, inverse_scale)
    )
}

/// `dz = dy ⊙ f'(z)` over a flattened `[rows][units]` block, bit-identical to
/// [`activation_backward`], with the tallies health needs (one pass, no arrays).
#[inline]
pub(crate) fn activation_backward_observed<A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    units: usize,
    threshold: f32,
) -> BackwardTally {
    dispatch!(
        out_of_line::activation_backward_observed(activation, z, dy, dz, units, threshold),
        activation_backward_observed(activation, z, dy, dz, units, threshold)
    )
}

/// Underflow attribution of `dz = dy·f'(z)`: `[became_zero, became_subnormal, zeros]`
/// (see [`generic::attribute_underflow`]; identical on every backend).
#[inline]
pub(crate) fn attribute_underflow<A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &[f32],
    lost_derivatives: bool,
) -> [u64; 3] {
    dispatch!(
        out_of_line::attribute_underflow(activation, z, dy, dz, lost_derivatives),
        attribute_underflow(activation, z, dy, dz, lost_derivatives)
    )
}

/// The one-lane (scalar backend, microcontroller) instances of the statistics kernels, out
/// of line: one copy of each in the binary however many call sites it has (the generic
/// bodies are `#[inline(always)]` so that the SIMD wrappers compile them with their target
/// features).
mod out_of_line {
    use super::{generic, BackwardTally, Elementwise, Moments};

    #[inline(never)]
    pub(super) fn moments(values: &[f32], scale_exponent: i32) -> Moments {
        generic::moments::<f32>(values, scale_exponent)
    }

    /// ‖W‖ every step, at a fixed scale (see `generic::norm_one_lane`).
    #[inline(never)]
    pub(super) fn norm(values: &[f32], scale_exponent: i32, smallest: bool) -> Moments {
        generic::norm_one_lane(values, scale_exponent, smallest)
    }

    #[inline(never)]
    pub(super) fn extremes(values: &[f32]) -> (f32, f32) {
        generic::extremes::<f32>(values)
    }

    #[inline(never)]
    pub(super) fn scaled_sums_finite(values: &[f32], inverse_scale: f32) -> (f32, f32) {
        generic::scaled_sums_finite::<f32>(values, inverse_scale)
    }

    #[inline(never)]
    pub(super) fn activation_backward_observed<A: Elementwise>(
        activation: &A,
        z: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
        threshold: f32,
    ) -> BackwardTally {
        generic::activation_backward_observed::<f32, A>(activation, z, dy, dz, units, threshold)
    }

    #[inline(never)]
    pub(super) fn attribute_underflow<A: Elementwise>(
        activation: &A,
        z: &[f32],
        dy: &[f32],
        dz: &[f32],
        lost_derivatives: bool,
    ) -> [u64; 3] {
        generic::attribute_underflow::<f32, A>(activation, z, dy, dz, lost_derivatives)
    }
}

pub(crate) use generic::BatchNormBackward;

/// Per-feature mean, biased and unbiased variance of a batch `x` (`[rows][features]`
/// flattened), into slices of `features` values. Bit-identical on every backend; see
/// `generic::column_statistics` for the order (shifted mean, two-pass variance).
#[inline]
pub(crate) fn batch_statistics(
    x: &[f32],
    features: usize,
    mean: &mut [f32],
    variance: &mut [f32],
    unbiased: &mut [f32],
) {
    dispatch!(
        generic::batch_statistics::<f32>(x, features, mean, variance, unbiased),
        batch_statistics(x, features, mean, variance, unbiased)
    )
}

/// `z = γ·(x − mean)·(1/√(variance + ε)) + β` per feature over a batch (`[rows][features]`
/// flattened), bit-identical on every backend.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn batch_normalize(
    x: &[f32],
    features: usize,
    mean: &[f32],
    variance: &[f32],
    epsilon: f32,
    gamma: &[f32],
    beta: &[f32],
    z: &mut [f32],
) {
    dispatch!(
        generic::batch_normalize::<f32>(x, features, mean, variance, epsilon, gamma, beta, z),
        batch_normalize(x, features, mean, variance, epsilon, gamma, beta, z)
    )
}

/// The backward of [`batch_normalize`]: dγ, dβ (per `p.mode`) and, if `dx` is not empty,
/// dx; bit-identical on every backend.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn batch_norm_backward(
    x: &[f32],
    dz: &[f32],
    mean: &[f32],
    variance: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
    p: &BatchNormBackward,
) {
    dispatch!(
        generic::batch_norm_backward::<f32>(x, dz, mean, variance, gamma, dgamma, dbeta, dx, p),
        batch_norm_backward(x, dz, mean, variance, gamma, dgamma, dbeta, dx, p)
    )
}

/// Running averages `r = (1 − m)·r + m·v` (PyTorch's running statistics), elementwise.
#[inline]
pub(crate) fn running_average(running: &mut [f32], values: &[f32], momentum: f32) {
    for (r, &v) in running.iter_mut().zip(values) {
        *r = (1.0 - momentum) * *r + momentum * v;
    }
}

/// Plain SGD with L2 weight decay: `w −= lr · (g + λ·w)` (bit-identical on every backend).
///
/// ```
/// let mut w = [1.0, 2.0];
/// gradguard::kernels::sgd_update(&mut w, &[0.5, -1.0], 0.1, 0.0);
/// assert_eq!(w, [0.95, 2.1]);
/// ```
#[inline]
pub fn sgd_update(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) {
    // Cortex-M with an FPU: blocks of eight in VFP code (the same two non-fused operations
    // per weight), the rest by the portable body.
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (w, g) = {
        let done = cortex_m::sgd_blocks(w, g, lr, weight_decay);
        (
            w.get_mut(done..).unwrap_or(&mut []),
            g.get(done..).unwrap_or(&[]),
        )
    };
    dispatch!(
        generic::sgd_update::<f32>(w, g, lr, weight_decay),
        sgd_update(w, g, lr, weight_decay)
    )
}

/// SGD with momentum (PyTorch convention): `v = μ·v + (g + λ·w)`, `w −= lr · v`
/// (bit-identical on every backend).
///
/// ```
/// let (mut w, mut v) = ([1.0], [1.0]);
/// gradguard::kernels::sgd_momentum_update(&mut w, &[0.5], &mut v, 0.5, 0.9, 0.0);
/// assert_eq!((w, v), ([0.3], [1.4]));
/// ```
#[inline]
pub fn sgd_momentum_update(
    w: &mut [f32],
    g: &[f32],
    velocity: &mut [f32],
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) {
    dispatch!(
        generic::sgd_momentum_update::<f32>(w, g, velocity, lr, momentum, weight_decay),
        sgd_momentum_update(w, g, velocity, lr, momentum, weight_decay)
    )
}

/// One Adam step (Kingma & Ba, with L2 weight decay added to the gradient):
/// `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
/// `w −= lr_t · m / (√v + ε_t)` where `lr_t = lr·√(1−β2^t)/(1−β1^t)` and
/// `ε_t = ε·√(1−β2^t)` (the bias corrections folded into two scalars, so
/// the loop does one square root and one division per element; both are correctly
/// rounded on every backend, so the result is bit-identical everywhere).
///
/// Saturating instead of overflowing: g + λw and g² are clamped to `f32::MAX` (so one huge
/// gradient makes v = f32::MAX at most, which decays, instead of +∞, which would freeze the
/// weight forever), `lr_t` and the new weight too. With finite `w`, `g`, `m`, `v` and
/// ε_t > 0 the outputs are finite; NaN in gives NaN out.
///
/// `bias1 = 1 − β1^t`, `bias2 = 1 − β2^t` are passed in by the optimiser.
///
/// ```
/// let (mut w, mut m, mut v) = ([1.0], [0.0], [0.0]);
/// gradguard::kernels::adam_update(&mut w, &[0.5], &mut m, &mut v, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001);
/// assert!((w[0] - 0.9).abs() < 1e-6); // the first Adam step moves by lr
/// ```
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn adam_update(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
) {
    let root_bias2 = libm::sqrtf(bias2);
    let step = AdamStep {
        beta1,
        beta2,
        weight_decay,
        lr_t: (lr * root_bias2 / bias1).min(f32::MAX),
        eps_t: epsilon * root_bias2,
    };
    dispatch!(
        generic::adam_update::<f32>(w, g, m, v, &step),
        adam_update(w, g, m, v, &step)
    )
}
