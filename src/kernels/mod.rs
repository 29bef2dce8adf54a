//! The kernels: every loop over arrays in gradguard lives below this module.
//!
//! Layers, losses and optimisers call only the functions re-exported here. Today they are the
//! portable scalar implementations in [`scalar`], which are also the reference the per-ISA
//! backends (x86_64, aarch64, wasm32) must reproduce — bit for bit for elementwise kernels,
//! within a documented bound where a backend reorders a sum. Adding a backend means adding a
//! sibling module and dispatching here; no caller changes.
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
mod fpu;
pub mod scalar;

pub use fpu::{subnormal_mode, SubnormalMode};

pub use scalar::{
    activation_backward_tracked, adam_update, binary_cross_entropy_with_logits_row,
    dense_backward_input, dense_backward_input_tracked, dense_backward_params,
    dense_backward_params_tracked, dense_forward, map, map_backward, sgd_momentum_update,
    sgd_update, softmax_backward_row, softmax_cross_entropy_row, softmax_row, squared_error_row,
};

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
