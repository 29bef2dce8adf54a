//! The instruction sets as types, and the one table of kernels they implement.
//!
//! A token ([`Scalar`], [`Sse2`], [`Avx2`], [`Avx512`], [`Neon`], [`Simd128`]) is a
//! zero-sized proof that this machine can run one instruction set: only [`Scalar`] can be
//! made freely; the others come from `new()` (which checks the CPU) or from
//! [`Backend::isa`] / [`active_isa`], so the type system, not a convention, guarantees that a
//! `#[target_feature]` body runs only where it may. Every token implements [`Isa`], whose
//! methods are the kernels; code generic over `K: Isa` (a layer's forward, a whole training
//! step) is compiled once per instruction set, and the choice is made once, where the
//! operation starts ([`with_isa!`]), not per row.
//!
//! The kernels are declared once, in the two tables below (`public_kernels!`: the kernels
//! users call, with their documentation; `internal_kernels!`: the statistics and batch-norm
//! kernels the crate calls): name, signature, documentation, the body generic over the
//! vector type `V` (in `kernels::generic`) and, where it differs, the scalar body. The
//! macros below turn each table into the trait, one implementation per token (one
//! `#[target_feature]` function per kernel) and the dispatched free functions. Adding a
//! kernel is one table entry plus its body; adding an instruction set is its vector type,
//! its token and one `impl_kernels!` line per table.
//!
//! ```
//! use gradguard::kernels::{Backend, Isa, Scalar};
//! let mut z = [[0.0; 1]];
//! Scalar::new().dense_forward(&[[2.0, 3.0]], &[1.0], &[[1.0, 1.0]], &mut z);
//! assert_eq!(z, [[6.0]]);
//! // Any backend this machine has, chosen at run time, passed explicitly.
//! let isa = Backend::best().isa().unwrap();
//! isa.dense_forward(&[[2.0, 3.0]], &[1.0], &[[1.0, 1.0]], &mut z);
//! assert_eq!(z, [[6.0]]);
//! ```

use super::generic::{self, AdamStep, Backward, BatchNormBackward, Derivative, ExpShifted, Value};
use super::generic::{BackwardTally, Moments};
use super::{scalar, Backend, GradMode};
use crate::elementwise::{Elementwise, Formula};

/// The kernels users call: the three matrix products of a dense layer, the elementwise
/// activations and the optimiser updates. Calls `$callback!` with the table.
macro_rules! public_kernels {
    ($callback:ident!($($head:tt)*)) => {
        $callback! { ($($head)*)
            /// Dense forward for a batch: `z[s][o] = Σ_i w[o][i]·x[s][i] + b[o]` (W is
            /// `OUT × IN`, row-major).
            ///
            /// On a SIMD backend the result may differ from the scalar reference
            /// ([`Backend::Scalar`]: each dot product summed from `i = 0` upwards starting at
            /// +0.0, then the bias added) by up to
            /// [`matrix_error_bound`](crate::kernels::matrix_error_bound)`(IN, Σ|w·x| + |b|)`:
            /// AVX2 and AVX-512 sum whole blocks of 8 or 16 samples in the reference order
            /// with fused multiply-adds (the samples are the vector lanes); the other samples,
            /// and the other backends, sum partial sums along the inputs.
            ///
            /// ```
            /// let mut z = [[0.0; 1]; 2];
            /// gradguard::kernels::dense_forward(&[[2.0, -1.0]], &[1.0], &[[1.0, 1.0], [0.0, 3.0]], &mut z);
            /// assert_eq!(z, [[2.0], [-2.0]]);
            /// ```
            fn dense_forward[const IN: usize, const OUT: usize, const B: usize](
                w: &[[f32; IN]; OUT],
                b: &[f32; OUT],
                x: &[[f32; IN]; B],
                z: &mut [[f32; OUT]; B],
            ) = generic::dense_forward::<V, IN, OUT, B>(w, b, x, z),
                scalar = scalar::dense_forward(w, b, x, z);

            /// Dense backward to the input: `dx[s][i] = Σ_o dz[s][o]·w[o][i]` (always
            /// overwrites `dx`).
            ///
            /// Order: `dx` starts at +0.0 and the rows of `w` are added for `o = 0, 1, …` on
            /// every backend; each term is a rounded product and a rounded sum, except on
            /// backends with FMA, which fuse them (within
            /// [`matrix_error_bound`](crate::kernels::matrix_error_bound) of the
            /// [`Backend::Scalar`] result).
            ///
            /// ```
            /// let mut dx = [[9.0; 2]];
            /// gradguard::kernels::dense_backward_input(&[[1.0, 2.0], [3.0, 4.0]], &[[1.0, -1.0]], &mut dx);
            /// assert_eq!(dx, [[-2.0, -2.0]]);
            /// ```
            fn dense_backward_input[const IN: usize, const OUT: usize, const B: usize](
                w: &[[f32; IN]; OUT],
                dz: &[[f32; OUT]; B],
                dx: &mut [[f32; IN]; B],
            ) = generic::dense_backward_input::<V, IN, OUT, B>(w, dz, dx),
                scalar = scalar::dense_backward_input(w, dz, dx);

            /// Dense backward to the parameters: `dw[o][i] (+)= Σ_s dz[s][o]·x[s][i]`,
            /// `db[o] (+)= Σ_s dz[s][o]`.
            ///
            /// Order: with [`GradMode::Overwrite`] both start at +0.0; samples are added for
            /// `s = 0, 1, …` on every backend. db is bit-identical to the [`Backend::Scalar`]
            /// result everywhere, dW on backends without FMA (otherwise within
            /// [`matrix_error_bound`](crate::kernels::matrix_error_bound)).
            ///
            /// ```
            /// use gradguard::GradMode;
            /// let (mut dw, mut db) = ([[0.0; 2]; 1], [0.0; 1]);
            /// let dz = [[2.0], [1.0]];
            /// let x = [[1.0, 0.5], [4.0, 0.0]];
            /// gradguard::kernels::dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
            /// assert_eq!((dw, db), ([[6.0, 1.0]], [3.0]));
            /// ```
            fn dense_backward_params[const IN: usize, const OUT: usize, const B: usize](
                dz: &[[f32; OUT]; B],
                x: &[[f32; IN]; B],
                dw: &mut [[f32; IN]; OUT],
                db: &mut [f32; OUT],
                mode: GradMode,
            ) = generic::dense_backward_params::<V, IN, OUT, B>(dz, x, dw, db, mode),
                scalar = scalar::dense_backward_params(dz, x, dw, db, mode);

            /// `out[k] = f(z[k])` for an elementwise activation, through its
            /// [`Elementwise::value_lanes`] (bit-identical on every backend), over any number
            /// of rows at once.
            ///
            /// ```
            /// let mut a = [0.0; 3];
            /// gradguard::kernels::activation_forward(&gradguard::Relu, &[1.0, -2.0, 3.0], &mut a);
            /// assert_eq!(a, [1.0, 0.0, 3.0]);
            /// ```
            fn activation_forward[A: Elementwise](activation: &A, z: &[f32], out: &mut [f32])
                = match A::FORMULA {
                    Formula::Identity => super::copy_values(z, out),
                    Formula::Relu => {
                        let done = super::relu_forward_blocks(z, out);
                        let (z, out) = (z.get(done..).unwrap_or(&[]), out.get_mut(done..).unwrap_or(&mut []));
                        generic::map::<V, _>(&Value(activation), z, &[], &[], out)
                    }
                    _ => generic::map::<V, _>(&Value(activation), z, &[], &[], out),
                };

            /// `out[k] = f(z[k])` and `d[k] = f'(z[k])` in one pass, through
            /// [`Elementwise::value_and_derivative_lanes`]: the same bits as
            /// `activation_forward` and `activation_derivative` on every backend, with the
            /// work the two formulas share done once (the sigmoid's exponential).
            ///
            /// ```
            /// let (mut a, mut d) = ([0.0; 2], [0.0; 2]);
            /// let z = [0.0, 100.0];
            /// gradguard::kernels::activation_forward_and_derivative(&gradguard::Sigmoid, &z, &mut a, &mut d);
            /// assert_eq!((a[0], d[0]), (0.5, 0.25));
            /// assert!(a[1] == 1.0 && d[1] > 0.0); // σ'(100) = 3.7e-44: not a false zero
            /// ```
            fn activation_forward_and_derivative[A: Elementwise](
                activation: &A,
                z: &[f32],
                out: &mut [f32],
                d: &mut [f32],
            ) = generic::value_and_derivative::<V, A>(activation, z, out, d);

            /// `dz[k] = dy[k] · f'(z[k])` for an elementwise activation (bit-identical on
            /// every backend).
            ///
            /// ```
            /// let mut dz = [0.0; 2];
            /// gradguard::kernels::activation_backward(&gradguard::Relu, &[1.0, -1.0], &[0.5, 0.5], &mut dz);
            /// assert_eq!(dz, [0.5, 0.0]);
            /// ```
            fn activation_backward[A: Elementwise](
                activation: &A,
                z: &[f32],
                dy: &[f32],
                dz: &mut [f32],
            ) = {
                let done = match A::FORMULA {
                    Formula::Relu => super::relu_backward_blocks(z, dy, dz),
                    _ => 0,
                };
                let (z, dy) = (z.get(done..).unwrap_or(&[]), dy.get(done..).unwrap_or(&[]));
                let dz = dz.get_mut(done..).unwrap_or(&mut []);
                generic::map::<V, _>(&Backward(activation), z, dy, &[], dz)
            };

            /// `d[k] = f'(z[k])` for an elementwise activation (bit-identical on every
            /// backend).
            ///
            /// ```
            /// let mut d = [0.0; 2];
            /// gradguard::kernels::activation_derivative(&gradguard::Sigmoid, &[0.0, 100.0], &mut d);
            /// assert_eq!(d[0], 0.25);
            /// assert!(d[1] > 0.0); // 3.7e-44: subnormal, not a false zero
            /// ```
            fn activation_derivative[A: Elementwise](activation: &A, z: &[f32], d: &mut [f32])
                = generic::map::<V, _>(&Derivative(activation), z, &[], &[], d);

            /// Plain SGD with L2 weight decay: `w −= lr · (g + λ·w)` (bit-identical on every
            /// backend).
            ///
            /// ```
            /// let mut w = [1.0, 2.0];
            /// gradguard::kernels::sgd_update(&mut w, &[0.5, -1.0], 0.1, 0.0);
            /// assert_eq!(w, [0.95, 2.1]);
            /// ```
            fn sgd_update[](w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32)
                = generic::sgd_update::<V>(w, g, lr, weight_decay),
                scalar = scalar::sgd_update(w, g, lr, weight_decay);

            /// SGD with momentum (PyTorch convention): `v = μ·v + (g + λ·w)`, `w −= lr · v`
            /// (bit-identical on every backend).
            ///
            /// ```
            /// let (mut w, mut v) = ([1.0], [1.0]);
            /// gradguard::kernels::sgd_momentum_update(&mut w, &[0.5], &mut v, 0.5, 0.9, 0.0);
            /// assert_eq!((w, v), ([0.3], [1.4]));
            /// ```
            fn sgd_momentum_update[](
                w: &mut [f32],
                g: &[f32],
                velocity: &mut [f32],
                lr: f32,
                momentum: f32,
                weight_decay: f32,
            ) = generic::sgd_momentum_update::<V>(w, g, velocity, lr, momentum, weight_decay),
                scalar = scalar::sgd_momentum_update(w, g, velocity, lr, momentum, weight_decay);

            /// One Adam step (Kingma & Ba, with L2 weight decay added to the gradient):
            /// `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
            /// `w −= lr_t · m / (√v + ε_t)` where `lr_t = lr·√(1−β2^t)/(1−β1^t)` and
            /// `ε_t = ε·√(1−β2^t)` (the bias corrections folded into two scalars, so the loop
            /// does one square root and one division per element; both are correctly rounded
            /// on every backend, so the result is bit-identical everywhere).
            ///
            /// Saturating instead of overflowing: g + λw and g² are clamped to `f32::MAX` (so
            /// one huge gradient makes v = f32::MAX at most, which decays, instead of +∞,
            /// which would freeze the weight forever), `lr_t` and the new weight too. With
            /// finite `w`, `g`, `m`, `v` and ε_t > 0 the outputs are finite; NaN in gives NaN
            /// out.
            ///
            /// `bias1 = 1 − β1^t`, `bias2 = 1 − β2^t` are passed in by the optimiser.
            ///
            /// ```
            /// let (mut w, mut m, mut v) = ([1.0], [0.0], [0.0]);
            /// gradguard::kernels::adam_update(&mut w, &[0.5], &mut m, &mut v, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001);
            /// assert!((w[0] - 0.9).abs() < 1e-6); // the first Adam step moves by lr
            /// ```
            fn adam_update[](
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
            ) = generic::adam_update::<V>(
                w,
                g,
                m,
                v,
                &AdamStep::new(lr, beta1, beta2, epsilon, weight_decay, bias1, bias2),
            );
        }
    };
}

/// The kernels only the crate calls (health statistics, softmax's exponentials, batch
/// normalization). Calls `$callback!` with the table.
macro_rules! internal_kernels {
    ($callback:ident!($($head:tt)*)) => {
        $callback! { ($($head)*)
            /// `out[k] = e^(z[k] − m)`.
            fn exp_shifted[](z: &[f32], m: f32, out: &mut [f32])
                = generic::map::<V, _>(&ExpShifted(m), z, &[], &[], out);

            /// `(max |v|, smallest nonzero |v|)` of `values` (NaN ignored; identical on every
            /// backend).
            fn extremes[](values: &[f32]) -> (f32, f32)
                = generic::extremes::<V>(values),
                scalar out_of_line = generic::extremes::<f32>(values);

            /// The statistics of a tensor in one pass over memory (see `generic::moments`):
            /// counts and extremes identical on every backend, sums per lane.
            fn moments[](values: &[f32], scale_exponent: i32) -> Moments
                = generic::moments::<V>(values, scale_exponent),
                scalar out_of_line = generic::moments::<f32>(values, scale_exponent);

            /// `moments` in one pass at a fixed scale 2^`scale_exponent` taken from an
            /// a-priori bound (see `generic::moments_at_scale`: the caller checks the maximum
            /// against the window).
            fn moments_at_scale[](values: &[f32], scale_exponent: i32) -> Moments
                = generic::moments_at_scale::<V, true>(values, scale_exponent),
                // The one-lane pass adapts its scale anyway: the same code as `moments`.
                scalar = Internal::moments(Scalar::new(), values, scale_exponent);

            /// `moments_at_scale` with the sums of |v| itself (scale 2^0): one multiply less
            /// per vector, for values whose sums the caller then checks (see
            /// `health::sums_fit`). `None` on the one-lane path, whose one pass adapts its
            /// scale anyway.
            fn moments_unscaled[](values: &[f32]) -> Option<Moments>
                = Some(generic::moments_at_scale::<V, false>(values, 0)),
                scalar = {
                    let _ = values;
                    None
                };

            /// Σ s² at the scale 2^`scale_exponent`, and the smallest nonzero |v| if
            /// `smallest` (else reported as 0): ‖W‖ and the dX screen's bound (a first layer
            /// computes no dX, so it skips the smallest magnitude). No counts, maximum or
            /// Σ|v|; the caller checks the sum (see `health::sums_fit`).
            fn norm_at_scale[](values: &[f32], scale_exponent: i32, smallest: bool) -> Moments
                = if smallest {
                    generic::norm_lanes::<V, true, true>(values, scale_exponent)
                } else {
                    generic::norm_lanes::<V, true, false>(values, scale_exponent)
                },
                scalar out_of_line = generic::norm_one_lane(values, scale_exponent, smallest);

            /// `norm_at_scale` unscaled (scale 2^0, no multiply); `None` on the one-lane path.
            fn norm_unscaled[](values: &[f32], smallest: bool) -> Option<Moments>
                = Some(if smallest {
                    generic::norm_lanes::<V, false, true>(values, 0)
                } else {
                    generic::norm_lanes::<V, false, false>(values, 0)
                }),
                scalar = {
                    let _ = (values, smallest);
                    None
                };

            /// `(Σ s, Σ s²)` with s = |v|·`inverse_scale` for finite values, four partial
            /// sums per lane (the last bits depend on the backend); non-finite if some value
            /// is.
            fn scaled_sums_finite[](values: &[f32], inverse_scale: f32) -> (f32, f32)
                = generic::scaled_sums_finite::<V>(values, inverse_scale),
                scalar out_of_line = generic::scaled_sums_finite::<f32>(values, inverse_scale);

            /// `dz = dy ⊙ f'(z)` over a flattened `[rows][units]` block, bit-identical to
            /// `activation_backward`, with the tallies health needs (one pass, no arrays).
            fn activation_backward_observed[A: Elementwise](
                activation: &A,
                z: &[f32],
                dy: &[f32],
                dz: &mut [f32],
                units: usize,
                threshold: f32,
            ) -> BackwardTally
                = generic::activation_backward_observed::<V, A>(
                    activation, z, dy, dz, units, threshold,
                ),
                scalar out_of_line = generic::activation_backward_observed::<f32, A>(
                    activation, z, dy, dz, units, threshold,
                );

            /// Underflow attribution of `dz = dy·f'(z)`: `[became_zero, became_subnormal,
            /// zeros]` (see `generic::attribute_underflow`; identical on every backend).
            fn attribute_underflow[A: Elementwise](
                activation: &A,
                z: &[f32],
                dy: &[f32],
                dz: &[f32],
                lost_derivatives: bool,
            ) -> [u64; 3]
                = generic::attribute_underflow::<V, A>(activation, z, dy, dz, lost_derivatives),
                scalar out_of_line = generic::attribute_underflow::<f32, A>(
                    activation, z, dy, dz, lost_derivatives,
                );

            /// Per-feature mean, biased and unbiased variance of a batch `x`
            /// (`[rows][features]` flattened), into slices of `features` values.
            /// Bit-identical on every backend; see `generic::column_statistics` for the order
            /// (shifted mean, two-pass variance).
            fn batch_statistics[](
                x: &[f32],
                features: usize,
                mean: &mut [f32],
                variance: &mut [f32],
                unbiased: &mut [f32],
            ) = generic::batch_statistics::<V>(x, features, mean, variance, unbiased);

            /// `z = γ·(x − mean)·(1/√(variance + ε)) + β` per feature over a batch
            /// (`[rows][features]` flattened), bit-identical on every backend.
            fn batch_normalize[](
                x: &[f32],
                features: usize,
                mean: &[f32],
                variance: &[f32],
                epsilon: f32,
                gamma: &[f32],
                beta: &[f32],
                z: &mut [f32],
            ) = generic::batch_normalize::<V>(x, features, mean, variance, epsilon, gamma, beta, z);

            /// The backward of `batch_normalize`: dγ, dβ (per `p.mode`) and, if `dx` is not
            /// empty, dx; bit-identical on every backend.
            fn batch_norm_backward[](
                x: &[f32],
                dz: &[f32],
                mean: &[f32],
                variance: &[f32],
                gamma: &[f32],
                dgamma: &mut [f32],
                dbeta: &mut [f32],
                dx: &mut [f32],
                p: &BatchNormBackward,
            ) = generic::batch_norm_backward::<V>(
                x, dz, mean, variance, gamma, dgamma, dbeta, dx, p,
            );
        }
    };
}

/// One table entry's grammar, shared by the macros below (documented here once):
/// `#[doc] fn name[generics](arg: Type, …) -> Ret = vector body, scalar = scalar body;`
/// where the vector body names the vector type `V` and `scalar = …` is optional (the
/// default is the vector body at `V = f32`); `scalar out_of_line = …` keeps one copy of the
/// scalar body in the binary (`#[inline(never)]`).
///
/// `declare_kernels!((pub trait Name [bounds] { other items }) table)`: the trait with one
/// method per kernel.
macro_rules! declare_kernels {
    (($(#[$trait_meta:meta])* $vis:vis trait $trait:ident [$($bounds:tt)*] { $($items:tt)* }) $(
        $(#[$meta:meta])*
        fn $name:ident [$($generics:tt)*] ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
            = $body:expr $(, scalar $($outline:ident)? = $scalar:expr)?;
    )*) => {
        $(#[$trait_meta])*
        $vis trait $trait: $($bounds)* {
            $($items)*
            $(
                $(#[$meta])*
                #[allow(clippy::too_many_arguments)]
                fn $name<$($generics)*>(self, $($arg: $ty),*) $(-> $ret)?;
            )*
        }
    };
}

/// `impl_kernels!((how Trait for Token [how's arguments]; other items) table)`: a token's
/// implementation of a table, each method's body made by [`kernel_body!`] according to
/// `how`.
macro_rules! impl_kernels {
    (($how:ident $trait:ident for $token:ident $arguments:tt $(; $($items:item)*)?) $(
        $(#[$meta:meta])*
        fn $name:ident [$($generics:tt)*] ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
            = $body:expr $(, scalar $($outline:ident)? = $scalar:expr)?;
    )*) => {
        impl $trait for $token {
            $($($items)*)?
            $(
                #[inline]
                #[allow(clippy::too_many_arguments)]
                fn $name<$($generics)*>(self, $($arg: $ty),*) $(-> $ret)? {
                    kernel_body!($how $arguments self $trait $name [$($generics)*]
                        ($($arg: $ty),*) [$($ret)?] $body; [$($scalar)?] [$($($outline)?)?])
                }
            )*
        }
    };
}

/// One kernel method's body:
/// * `features [Vector, "target features"]`: a `#[target_feature]` function over the vector
///   body (AVX-512, AVX2+FMA, SSE2), called under the token's proof;
/// * `baseline [Vector]`: an instruction set the build enables anyway (NEON, simd128): the
///   vector body, no `unsafe`;
/// * `scalar []`: the scalar body where the entry has one (out of line if it says so), else
///   the vector body at `V = f32`;
/// * `any []`: [`AnyIsa`]'s, one `match` per call.
macro_rules! kernel_body {
    (features [$vector:ty, $features:literal] $self:tt $trait:ident $name:ident
        [$($generics:tt)*] ($($arg:ident : $ty:ty),*) [$($ret:ty)?] $body:expr; [$($scalar:expr)?] [$($outline:ident)?]
    ) => {{
        #[target_feature(enable = $features)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn kernel<$($generics)*>($($arg: $ty),*) $(-> $ret)? {
            type V = $vector;
            $body
        }
        // SAFETY: a token of this type exists only if `Backend::is_available` saw the
        // instruction set in CPUID and its register state enabled in XCR0 (see the tokens'
        // `new`, `Backend::isa` and `active_isa`).
        unsafe { kernel($($arg),*) }
    }};
    (baseline [$vector:ty] $self:tt $trait:ident $name:ident
        [$($generics:tt)*] ($($arg:ident : $ty:ty),*) [$($ret:ty)?] $body:expr; [$($scalar:expr)?] [$($outline:ident)?]
    ) => {{
        type V = $vector;
        $body
    }};
    (scalar [] $self:tt $trait:ident $name:ident
        [$($generics:tt)*] ($($arg:ident : $ty:ty),*) [$($ret:ty)?] $body:expr; [] []
    ) => {{
        type V = f32;
        $body
    }};
    (scalar [] $self:tt $trait:ident $name:ident
        [$($generics:tt)*] ($($arg:ident : $ty:ty),*) [$($ret:ty)?] $body:expr; [$scalar:expr] []
    ) => {
        $scalar
    };
    // One copy of the body in the binary however many call sites it has (the generic
    // bodies are `#[inline(always)]`, so that the SIMD wrappers compile them with their
    // target features): the statistics kernels of a firmware's health tracking.
    (scalar [] $self:tt $trait:ident $name:ident [$($generics:tt)*] ($($arg:ident : $ty:ty),*)
        [$($ret:ty)?] $body:expr; [$scalar:expr] [out_of_line]
    ) => {{
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn kernel<$($generics)*>($($arg: $ty),*) $(-> $ret)? {
            $scalar
        }
        kernel($($arg),*)
    }};
    (any [] $self:tt $trait:ident $name:ident
        [$($generics:tt)*] ($($arg:ident : $ty:ty),*) [$($ret:ty)?] $body:expr; [$($scalar:expr)?] [$($outline:ident)?]
    ) => {
        with_isa!($self, k => $trait::$name(k, $($arg),*))
    };
}

/// `free_functions!((visibility Trait) table)`: each kernel as a function that runs on the
/// active backend ([`active_isa`]), with the table's documentation.
macro_rules! free_functions {
    (($vis:vis $trait:ident) $(
        $(#[$meta:meta])*
        fn $name:ident [$($generics:tt)*] ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
            = $body:expr $(, scalar $($outline:ident)? = $scalar:expr)?;
    )*) => {
        $(
            $(#[$meta])*
            #[inline]
            #[allow(clippy::too_many_arguments)]
            $vis fn $name<$($generics)*>($($arg: $ty),*) $(-> $ret)? {
                with_isa!(active_isa(), k => $trait::$name(k, $($arg),*))
            }
        )*
    };
}

/// Runs `$body` with `$k` bound to the token inside an [`AnyIsa`]: one `match`, whose arms
/// each compile `$body` for one instruction set (an arm for `Scalar` and one per line of
/// `vector_backends!` (in `backend`), see `with_isa_match!`). This is how an operation (a layer's
/// forward, a training step) is chosen once and then monomorphised whole. Without an
/// `$isa` it uses [`active_isa`].
macro_rules! with_isa {
    ($isa:expr, $k:ident => $body:expr) => {
        $crate::backend::vector_backends!($crate::kernels::with_isa_match!($isa, $k, $body))
    };
    ($k:ident => $body:expr) => {
        $crate::kernels::with_isa!($crate::kernels::active_isa(), $k => $body)
    };
}

/// `with_isa!`'s `match`: an arm for `Scalar` and one per line of `vector_backends!` (in `backend`).
macro_rules! with_isa_match {
    (($isa:expr, $k:ident, $body:expr)
        $($(#[$doc:meta])* $token:ident = $value:literal, $text:literal, [$cfg:meta]
        available($available:expr), fma($fma:expr), $how:ident $arguments:tt;)*) => {
        match $isa {
            $crate::kernels::AnyIsa::Scalar($k) => $body,
            $(
                #[cfg($cfg)]
                $crate::kernels::AnyIsa::$token($k) => $body,
            )*
        }
    };
}
pub(crate) use with_isa;
pub(crate) use with_isa_match;

internal_kernels!(declare_kernels!(
    /// The crate's own kernels (statistics, softmax's exponentials, batch normalization):
    /// a supertrait of [`Isa`] that users cannot name, so `Isa` is sealed too.
    pub trait Internal [Copy] {}
));

public_kernels!(declare_kernels!(
    /// An instruction set whose kernels this machine can run: implemented by the tokens
    /// ([`Scalar`], and where the target has them [`Sse2`], [`Avx2`], [`Avx512`], `Neon`,
    /// `Simd128`) and by [`AnyIsa`], one of them chosen at run time. Sealed.
    ///
    /// Code generic over `K: Isa` is compiled for each instruction set; the kernels are its
    /// methods. What may differ between instruction sets is in the documentation of
    /// [`crate::kernels`].
    ///
    /// ```
    /// use gradguard::kernels::{Backend, Isa};
    /// fn relu_all(isa: impl Isa, z: &[f32], a: &mut [f32]) {
    ///     isa.activation_forward(&gradguard::Relu, z, a);
    /// }
    /// let mut a = [0.0; 2];
    /// for backend in Backend::available() {
    ///     relu_all(backend.isa().unwrap(), &[1.0, -1.0], &mut a);
    ///     assert_eq!(a, [1.0, 0.0]);
    /// }
    /// ```
    pub trait Isa [Internal + core::fmt::Debug + Send + Sync + 'static] {
        /// The backend this instruction set is.
        ///
        /// ```
        /// use gradguard::kernels::{Backend, Isa, Scalar};
        /// assert_eq!(Scalar::new().backend(), Backend::Scalar);
        /// ```
        #[must_use]
        fn backend(self) -> Backend;
    }
));

/// The scalar reference kernels (also the microcontroller path): always available.
///
/// ```
/// use gradguard::kernels::{Isa, Scalar};
/// let mut d = [0.0];
/// Scalar::new().activation_derivative(&gradguard::Sigmoid, &[0.0], &mut d);
/// assert_eq!(d, [0.25]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scalar(());

impl Scalar {
    /// The scalar token (every machine runs it).
    ///
    /// ```
    /// const S: gradguard::kernels::Scalar = gradguard::kernels::Scalar::new();
    /// # let _ = S;
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        Scalar(())
    }
}

public_kernels!(impl_kernels!(scalar Isa for Scalar [];
    fn backend(self) -> Backend {
        Backend::Scalar
    }
));
internal_kernels!(impl_kernels!(scalar Internal for Scalar []));

/// The token types of the list, with their kernels, [`AnyIsa`] and [`Backend::isa`].
macro_rules! define_tokens {
    (() $($(#[$doc:meta])* $token:ident = $value:literal, $text:literal, [$cfg:meta]
        available($available:expr), fma($fma:expr), $how:ident $arguments:tt;)*) => {
        $(
            $(#[$doc])*
            #[cfg($cfg)]
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct $token(());

            #[cfg($cfg)]
            impl $token {
                /// The token, if this machine can run the instruction set (checked once and
                /// cached, see [`Backend::is_available`]).
                ///
                /// ```
                #[doc = concat!("use gradguard::kernels::{Backend, ", stringify!($token), "};")]
                #[doc = concat!("assert_eq!(", stringify!($token), "::new().is_some(), Backend::", stringify!($token), ".is_available());")]
                /// ```
                #[must_use]
                pub fn new() -> Option<Self> {
                    Backend::$token.is_available().then_some($token(()))
                }
            }

            #[cfg($cfg)]
            public_kernels!(impl_kernels!($how Isa for $token $arguments;
                fn backend(self) -> Backend {
                    Backend::$token
                }
            ));
            #[cfg($cfg)]
            internal_kernels!(impl_kernels!($how Internal for $token $arguments));

            #[cfg($cfg)]
            impl From<$token> for AnyIsa {
                fn from(token: $token) -> AnyIsa {
                    AnyIsa::$token(token)
                }
            }
        )*

        impl From<Scalar> for AnyIsa {
            fn from(token: Scalar) -> AnyIsa {
                AnyIsa::Scalar(token)
            }
        }

        /// One of the tokens, chosen at run time: what [`Backend::isa`] and [`active_isa`]
        /// return. It implements [`Isa`] itself (each kernel call then matches on it); to
        /// compile a whole operation for the chosen instruction set instead, match on it
        /// once.
        ///
        /// ```
        /// use gradguard::kernels::{active_isa, AnyIsa, Isa};
        /// let isa: AnyIsa = active_isa();
        /// assert_eq!(isa.backend(), gradguard::kernels::backend());
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum AnyIsa {
            /// [`Scalar`].
            Scalar(Scalar),
            $(
                #[doc = concat!("`", stringify!($token), "`.")]
                #[cfg($cfg)]
                $token($token),
            )*
        }

        impl Backend {
            /// This backend's token, if this machine can run it: pass it to code generic
            /// over [`Isa`] to run that code on this backend, whatever
            /// [`backend`](super::backend) is.
            ///
            /// ```
            /// use gradguard::kernels::{Backend, Isa};
            /// let isa = Backend::Scalar.isa().unwrap();
            /// let mut a = [0.0];
            /// isa.activation_forward(&gradguard::Sigmoid, &[0.0], &mut a);
            /// assert_eq!(a, [0.5]);
            /// ```
            #[must_use]
            pub fn isa(self) -> Option<AnyIsa> {
                if !self.is_available() {
                    return None;
                }
                // A token is made here only for a backend `is_available` just confirmed.
                Some(match self {
                    $(
                        #[cfg($cfg)]
                        Backend::$token => AnyIsa::$token($token(())),
                    )*
                    _ => AnyIsa::Scalar(Scalar(())),
                })
            }
        }
    };
}

crate::backend::vector_backends!(define_tokens!());

public_kernels!(impl_kernels!(any Isa for AnyIsa [];
    fn backend(self) -> Backend {
        with_isa!(self, k => k.backend())
    }
));
internal_kernels!(impl_kernels!(any Internal for AnyIsa []));

public_kernels!(free_functions!(pub Isa));

/// The token of the active [`backend`](super::backend) (what every dispatched call uses).
/// On targets without vector backends it is [`Scalar`], with no load and no branch.
///
/// ```
/// use gradguard::kernels::{active_isa, backend, Isa};
/// assert_eq!(active_isa().backend(), backend());
/// ```
#[inline]
#[must_use]
pub fn active_isa() -> AnyIsa {
    #[cfg(not(gradguard_simd))]
    {
        AnyIsa::Scalar(Scalar(()))
    }
    #[cfg(gradguard_simd)]
    {
        // `backend()` returns only available backends, so this is never the fallback.
        super::backend().isa().unwrap_or(AnyIsa::Scalar(Scalar(())))
    }
}
