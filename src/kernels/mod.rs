//! The kernels: every loop over arrays in gradguard lives below this module.
//!
//! Layers, losses and optimisers call only the functions here. Each one runs on the active
//! [`Backend`] — AVX-512F, AVX2+FMA or SSE2 on x86_64 (chosen at run time by CPUID, no std
//! needed), NEON on aarch64, simd128 on wasm32, scalar everywhere else — see [`backend`],
//! [`set_backend`] and the build-time variable `GRADGUARD_BACKEND`.
//!
//! What a backend may change: only the three matrix products. [`dense_forward`] sums its dot
//! products in a different order (or, on AVX2 and AVX-512 for whole blocks of 8 or 16
//! samples, in the reference order with fused multiply-adds), and on backends with FMA ([`Backend::fuses_multiply_add`])
//! [`dense_backward_input`] and [`dense_backward_params`] fuse their multiply-adds (in the
//! reference order); all three stay within [`matrix_error_bound`] of the scalar
//! reference (the [`Backend::Scalar`] kernels, in the order each function documents), and the backward ones are bit-identical to it on SSE2 and simd128. (In a build for a Cortex-M with Helium, such as `-C target-cpu=cortex-m55`, the `Scalar` kernels' matrix products themselves run as MVE code that fuses its multiply-adds in the reference order: [`Backend::fuses_multiply_add`].) Every other
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
#[cfg(gradguard_mve)]
#[allow(unsafe_code)]
mod helium;
#[allow(unsafe_code)]
mod isa;
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

pub(crate) use dispatch::VECTOR_BACKENDS;
pub(crate) use generic::{Magnitudes, Moments};
pub(crate) use isa::{with_isa, with_isa_match};

pub use dispatch::{backend, set_backend, Backend};
pub use fpu::{subnormal_mode, SubnormalMode};
pub use isa::{
    activation_backward, activation_derivative, activation_forward,
    activation_forward_and_derivative, active_isa, adam_update, dense_backward_input,
    dense_backward_params, dense_forward, sgd_momentum_update, sgd_update, AnyIsa, Isa, Scalar,
};
/// `pub use isa::Token;` for each token of `vector_backends!`, under its cfg.
macro_rules! reexport_tokens {
    (() $($(#[$doc:meta])* $token:ident = $value:literal, $text:literal, [$cfg:meta]
        available($available:expr), fma($fma:expr), $how:ident $arguments:tt;)*) => {
        $(
            #[cfg($cfg)]
            pub use isa::$token;
        )*
    };
}
crate::backend::vector_backends!(reexport_tokens!());
pub use rows::{
    binary_cross_entropy_with_logits_row, softmax_backward_row, softmax_cross_entropy_row,
    softmax_row, squared_error_row,
};
pub use rows::{softmax_cross_entropy_row_on, softmax_row_on};

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

pub(crate) use generic::BatchNormBackward;

/// ReLU's forward on the whole blocks of eight of `z` and `out` in VFP code on a Cortex-M
/// with an FPU, or of four in integer Helium code on one with MVE (the same bits as
/// `Relu::value_lanes`); returns the values done (0 elsewhere, where the generic kernel
/// does them all).
#[inline(always)]
pub(crate) fn relu_forward_blocks(z: &[f32], out: &mut [f32]) -> usize {
    #[cfg(gradguard_mve)]
    return helium::relu_forward_blocks(z, out);
    #[cfg(all(target_arch = "arm", target_abi = "eabihf", not(gradguard_mve)))]
    return cortex_m::relu_forward_blocks(z, out);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        let _ = (z, out);
        0
    }
}

/// ReLU's backward, `dz = dy · f'(z)`, on the whole blocks of four in VFP code on a
/// Cortex-M with an FPU, or integer Helium code on one with MVE (the same bits as the
/// generic kernel); returns the values done (0 elsewhere).
#[inline(always)]
pub(crate) fn relu_backward_blocks(z: &[f32], dy: &[f32], dz: &mut [f32]) -> usize {
    #[cfg(gradguard_mve)]
    return helium::relu_backward_blocks(z, dy, dz);
    #[cfg(all(target_arch = "arm", target_abi = "eabihf", not(gradguard_mve)))]
    return cortex_m::relu_backward_blocks(z, dy, dz);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        let _ = (z, dy, dz);
        0
    }
}

/// `out[k] = z[k]` over the common length, bit for bit: the identity's forward pass. On a
/// Cortex-M with an FPU the blocks of eight are a VFP block copy (`kernels::cortex_m`).
#[inline]
pub(crate) fn copy_values(z: &[f32], out: &mut [f32]) {
    let n = z.len().min(out.len());
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let done = cortex_m::copy_blocks(z, out);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    let done = 0;
    let (from, to) = (z.get(done..n), out.get_mut(done..n));
    if let (Some(from), Some(to)) = (from, to) {
        to.copy_from_slice(from);
    }
}

/// Running averages `r = (1 − m)·r + m·v` (PyTorch's running statistics), elementwise.
#[inline]
pub(crate) fn running_average(running: &mut [f32], values: &[f32], momentum: f32) {
    for (r, &v) in running.iter_mut().zip(values) {
        *r = (1.0 - momentum) * *r + momentum * v;
    }
}
