//! # gradguard
//!
//! Fixed-size `f32` neural-network layers for `#![no_std]` targets — from microcontrollers
//! to desktop CPUs — that train, with activation derivatives that do not silently round to
//! zero.
//!
//! ## Example
//! ```
//! use gradguard::{argmax, init::Init, train_step, Dense, Layer, Relu, Seq, Sgd,
//!                 SoftmaxCrossEntropy, Workspace, Zeroed};
//! use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
//!
//! type Net = Seq![Dense<2, 8, Relu>, Dense<8, 2>];
//! let net = Net::default();
//! let mut params = <Net as Layer>::Params::ZEROED;
//! let mut grads = <Net as Layer>::Params::ZEROED;
//! let mut workspace = Workspace::<Net, 4>::ZEROED;
//! net.init(&mut params, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(3));
//!
//! // XOR as two classes.
//! let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let y = [0, 1, 1, 0];
//! let mut sgd = Sgd::new(0.5)?;
//! for _ in 0..500 {
//!     train_step(&net, &mut params, &mut grads, &mut workspace, &mut sgd,
//!                &SoftmaxCrossEntropy, &x, &y)?;
//! }
//! net.forward(&params, &x, &mut workspace.cache);
//! let predicted: Vec<usize> = Net::output(&workspace.cache).iter().map(|r| argmax(r)).collect();
//! assert_eq!(predicted, y);
//! # Ok::<(), gradguard::Error>(())
//! ```
//!
//! Backpropagation multiplies one activation derivative per layer. σ' is at most 1/4 and
//! tanh' at most 1, so in a deep sigmoid or tanh network the gradient of the first layers
//! shrinks geometrically (the vanishing gradient problem). In `f32` a shrinking gradient
//! first becomes subnormal and then exactly zero, and learning stops without any error.
//! Floating point adds false zeros of its own: the textbook `s * (1 - s)` is exactly 0 for
//! x ≥ 16.64 although σ'(x) is a normal number there. gradguard computes every derivative
//! from the pre-activation so it stays a normal float as long as the true value is one.
//!
//! ## Shape of the crate
//! * [`math`]: elementary functions (exp, expm1, σ, tanh and their derivatives) with their
//!   measured error bounds, written once over [`lanes::Lanes`] (f32 or a SIMD vector), plus
//!   `f64` reference derivatives.
//! * [`kernels`]: every loop over arrays (dense forward/backward, activations, softmax,
//!   optimiser updates, health statistics) on the best backend of the machine — AVX-512F,
//!   AVX2+FMA or SSE2 (detected with CPUID, no std needed), NEON, simd128 — or the scalar
//!   reference, which is also the microcontroller path ([`kernels::Backend`]).
//! * [`Activation`]s, [`Layer`]s ([`Dense`], [`ActivationLayer`], [`Chain`], [`Seq!`]),
//!   [`Loss`]es, [`Optimizer`]s, [`init`] and [`train_step`].
//! * Storage is plain arrays: parameters, gradients and caches have `const` zeroed values
//!   ([`Zeroed`]) so a whole network can live in `static`s; [`training_bytes`] says how much.
//!
//! ## Features
//! * `defmt` (off by default): derives `defmt::Format` on the health reports and their parts,
//!   [`Error`] and [`kernels::Backend`], for logging them from firmware over RTT (see
//!   `firmware/examples/board`). Costs the `defmt` dependency and, in a firmware
//!   that logs a report, the formatting code defmt generates (no change to the kernels).
//! * `safetensors` (off): the `interchange` module, safetensors import and export with PyTorch's
//!   names, and conversion to and from [`image`]s. Needs an allocator (`alloc`; the rest of
//!   the crate never allocates) and costs the `safetensors` crate with serde and serde_json.
//! * `bench-peers` (off): only for `cargo bench --bench peers`; pulls in nalgebra, ndarray,
//!   matrixmultiply and gemm to compare against. The library never uses them.
//!
//! Without features the crate depends only on `libm` and `rand_core` (the `Rng` trait; the
//! examples use `rand_xoshiro`) and needs no `alloc`.
//!
//! ## Bad input: the contract
//! * NaN and ±∞ propagate through every function (f'(NaN) = NaN for every activation) and are
//!   never turned into ordinary numbers; the health reports count them
//!   ([`health::ClassCounts`], the `Exploding` flag).
//! * Invalid parameters (a label out of range, a BCE target outside [0, 1], a NaN, infinite
//!   or non-positive learning rate, β outside [0, 1), …) return an [`Error`] and change
//!   nothing.
//! * No function panics on any `f32` value, and slices of different lengths are processed up
//!   to the shortest. This is enforced mechanically: the library denies
//!   `clippy::panic`, `clippy::unwrap_used`, `clippy::expect_used` and
//!   `clippy::indexing_slicing` (CI runs clippy with `-D warnings`). The few local
//!   exceptions are compile-time `const` evaluation, each with its reason beside it. The
//!   lints were chosen over a link-time "no panic path" check because they hold on every
//!   target and every optimisation level, and point at the line; `fuzz/` then drives every
//!   kernel with arbitrary bit patterns on every backend (a panic is a crash there).
//! * Optimisers never turn finite parameters and gradients into NaN; [`Adam`] never into ±∞
//!   either (it saturates at `f32::MAX`), [`Sgd`] and [`Momentum`] only where the update
//!   itself exceeds `f32::MAX`. [`Trainer::step_guarded`] refuses a step whose loss or gradients
//!   are not finite (parameters and optimiser state untouched) and clips gradients by value
//!   or global norm. Integer arguments (indices, sizes) never overflow.
//! * `unsafe` exists only in the kernel modules (`kernels::{dispatch, x86, neon, wasm, fpu,
//!   cortex_m}`), each block with a `// SAFETY:` line; Miri runs the library's unit tests.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![warn(clippy::must_use_candidate, clippy::missing_errors_doc)]
#![deny(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod activation;
mod backend;
#[cfg(feature = "digits")]
pub mod datasets;
mod elementwise;
mod error;
pub mod health;
pub mod image;
pub mod init;
#[cfg(feature = "safetensors")]
pub mod interchange;
pub mod kernels;
pub mod lanes;
mod layer;
mod loss;
pub mod math;
mod optim;
mod storage;
mod train;
mod trainer;

pub use activation::{
    Activation, Elementwise, Elu, Formula, Identity, LeakyRelu, Relu, Sigmoid, Softmax, Softsign,
    Tanh,
};
pub use error::Error;
pub use kernels::GradMode;
pub use layer::{
    ActivationCache, ActivationLayer, BackwardContext, BatchNorm, BatchNormCache, BatchNormParams,
    Chain, ChainCache, Dense, DenseCache, DenseParams, Layer, Phase,
};
pub use loss::{BinaryCrossEntropyWithLogits, Loss, MeanSquaredError, SoftmaxCrossEntropy};
pub use optim::{Adam, LearningRate, Momentum, Optimizer, Sgd};
pub use storage::{NoParameters, Pair, Parameters, TensorInfo, TensorKind, Zeroed};
pub use train::{
    accumulate_gradients, argmax, compute_gradients, training_bytes, MicroBatch, StepGuard,
    StepOutcome, Workspace,
};
pub use trainer::{train_step, Trainer};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
