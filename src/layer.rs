//! Layers with const-generic shapes and their composition.
//!
//! A [`Layer`] is a small configuration value (most are zero-sized); its parameters,
//! gradients and forward cache are separate plain structs ([`Layer::Params`],
//! [`Layer::Cache`]) so they can live in `static`s and be reused across steps. Two layers
//! compose with [`Chain`] (or the [`Seq!`](crate::Seq) type macro) only if the output of the
//! first is the input of the second — checked by the compiler:
//!
//! ```compile_fail,E0271
//! use gradguard::{Chain, Dense};
//! // 32 outputs cannot feed 16 inputs.
//! type Broken = Chain<Dense<64, 32>, Dense<16, 10>>;
//! let _ = core::mem::size_of::<Broken>();
//! ```
//!
//! ```
//! use gradguard::{Chain, Dense, Relu};
//! type Fine = Chain<Dense<64, 32, Relu>, Dense<32, 10>>;
//! let _ = core::mem::size_of::<Fine>();
//! ```

use crate::activation::{Activation, Identity};
use crate::health::{GradientObserver, NoHealth};
use crate::init::{self, Init};
use crate::kernels::{with_isa, GradMode, Isa};
use crate::storage::{NoParameters, Pair, Parameters, TensorInfo, TensorKind, Zeroed};
use rand_core::Rng;

mod batch_norm;
pub use batch_norm::{BatchNorm, BatchNormCache, BatchNormParams};

/// Which forward pass runs: inference ([`Layer::forward`]) or training
/// ([`Layer::forward_train`]). Only layers that behave differently while training
/// ([`BatchNorm`]: the statistics of this batch instead of the running ones) look at it.
///
/// ```
/// use gradguard::{kernels::Scalar, BatchNorm, Layer, Phase, Zeroed};
/// let bn = BatchNorm::<1>::default();
/// let mut p = <BatchNorm<1> as Layer>::Params::ZEROED;
/// (p.scale, p.running_variance) = ([1.0], [1.0]);
/// let mut cache = <BatchNorm<1> as Layer>::Cache::<2>::ZEROED;
/// let x = [[1.0], [3.0]];
/// bn.forward_on(Scalar::new(), Phase::Inference, &p, &x, &mut cache);
/// assert_eq!(<BatchNorm<1> as Layer>::output(&cache)[1][0], 3.0 / (1.0f32 + 1e-5).sqrt());
/// bn.forward_on(Scalar::new(), Phase::Training, &p, &x, &mut cache);
/// assert!((<BatchNorm<1> as Layer>::output(&cache)[1][0] - 1.0).abs() < 1e-4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Inference: running statistics.
    Inference,
    /// Training: the batch's own statistics.
    Training,
}

/// What [`Layer::backward_at`] needs besides the data: whether the parameter gradients are
/// overwritten or accumulated, who records the gradient health, and where the layer sits.
///
/// The instruction set (`isa`) is a token ([`crate::kernels::Isa`]): the whole backward
/// pass is compiled for it.
///
/// ```
/// use gradguard::{health::NoHealth, kernels::Scalar, BackwardContext, GradMode};
/// let context = BackwardContext {
///     isa: Scalar::new(),
///     mode: GradMode::Overwrite,
///     observer: &mut NoHealth,
///     layer: 0,
/// };
/// assert_eq!(context.layer, 0);
/// ```
#[derive(Debug)]
pub struct BackwardContext<'a, O, K> {
    /// The instruction set whose kernels run.
    pub isa: K,
    /// Overwrite or add to the parameter gradients (dx is always overwritten).
    pub mode: GradMode,
    /// The health observer ([`NoHealth`] for none).
    pub observer: &'a mut O,
    /// Index (from the network input) of the layer's first parametrised layer.
    pub layer: u16,
}

/// A differentiable layer mapping a batch of `Input` rows to a batch of `Output` rows.
///
/// The batch size `B` is a const generic of each call, so one network value serves training
/// (e.g. `B = 32`) and inference (`B = 1`) with caches of the matching size.
///
/// Contract of [`Layer::backward`]: it must be given the same `params` and input `x` as the
/// preceding [`Layer::forward`] on that cache. It writes the parameter gradients into
/// `grads` (overwriting or accumulating, per [`GradMode`]) and, if `dx` is `Some`, the
/// gradient with respect to the input (always overwritten).
///
/// ```
/// use gradguard::{Dense, GradMode, Layer, Relu, Seq, Zeroed};
/// type Net = Seq![Dense<2, 3, Relu>, Dense<3, 1>];
/// let net = Net::default();
/// let mut params = <Net as Layer>::Params::ZEROED;
/// params.first.bias = [1.0; 3];
/// params.second.weights = [[1.0, 2.0, 3.0]];
/// let mut cache = <Net as Layer>::Cache::<1>::ZEROED;
/// let x = [[0.0, 0.0]];
/// net.forward(&params, &x, &mut cache);
/// assert_eq!(Net::output(&cache), &[[6.0]]);
/// let mut grads = <Net as Layer>::Params::ZEROED;
/// net.backward(&params, &x, &mut cache, &[[1.0]], &mut grads, None, GradMode::Overwrite);
/// assert_eq!(grads.first.bias, [1.0, 2.0, 3.0]);
/// ```
pub trait Layer {
    /// One input row, `[f32; IN]`.
    type Input: Copy + Zeroed;
    /// One output row, `[f32; OUT]`.
    type Output: Copy + Zeroed;
    /// Parameters; gradients have the same type.
    type Params: Parameters;
    /// What forward keeps for backward (and the output), for a batch of `B`.
    type Cache<const B: usize>: Zeroed;

    /// Initialises `params` in place: weights by `init`, biases to zero.
    fn init<R: Rng + ?Sized>(&self, params: &mut Self::Params, init: Init, rng: &mut R);

    /// Runs the layer on a batch (inference); the output is then
    /// [`Layer::output`]`(cache)`. Runs on the active backend
    /// ([`crate::kernels::backend`]), chosen once for the whole network.
    #[inline]
    fn forward<const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
    ) {
        with_isa!(k => self.forward_on(k, Phase::Inference, params, x, cache));
    }

    /// [`Layer::forward`] (`phase` [`Phase::Inference`]) or [`Layer::forward_train`]
    /// ([`Phase::Training`]) with the kernels of `isa` (a token, or an
    /// [`AnyIsa`](crate::kernels::AnyIsa) chosen at run time). Implement this; layers that
    /// behave the same in both phases (all but [`BatchNorm`]) ignore `phase`, and a layer
    /// made of layers passes it on.
    ///
    /// ```
    /// use gradguard::{kernels::Backend, Dense, Layer, Phase, Zeroed};
    /// let layer = Dense::<2, 1>::default();
    /// let mut p = <Dense<2, 1> as Layer>::Params::ZEROED;
    /// p.weights = [[1.0, 2.0]];
    /// let mut cache = <Dense<2, 1> as Layer>::Cache::<1>::ZEROED;
    /// for backend in Backend::available() {
    ///     layer.forward_on(backend.isa().unwrap(), Phase::Inference, &p, &[[3.0, 4.0]], &mut cache);
    ///     assert_eq!(cache.output, [[11.0]]);
    /// }
    /// ```
    fn forward_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        phase: Phase,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
    );

    /// The output of the last forward on `cache`.
    fn output<const B: usize>(cache: &Self::Cache<B>) -> &[Self::Output; B];

    /// Runs the layer on a batch as training does: layers that behave differently while
    /// training ([`BatchNorm`]: statistics of this batch instead of the running ones) do so
    /// here; for the others it is [`Layer::forward`].
    ///
    /// The training steps ([`crate::train_step`], [`crate::compute_gradients`], …) call
    /// this; [`Layer::forward`] is inference. Which one runs is chosen by the call, so there
    /// is no mode to forget to switch.
    ///
    /// ```
    /// use gradguard::{BatchNorm, Layer, Zeroed};
    /// let bn = BatchNorm::<1>::default();
    /// let mut p = <BatchNorm<1> as Layer>::Params::ZEROED;
    /// p.scale = [1.0]; // what `Layer::init` sets
    /// let mut cache = <BatchNorm<1> as Layer>::Cache::<2>::ZEROED;
    /// bn.forward_train(&p, &[[1.0], [3.0]], &mut cache);
    /// let out = <BatchNorm<1> as Layer>::output(&cache);
    /// assert!((out[0][0] + 1.0).abs() < 1e-4 && (out[1][0] - 1.0).abs() < 1e-4);
    /// ```
    #[inline]
    fn forward_train<const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
    ) {
        with_isa!(k => self.forward_on(k, Phase::Training, params, x, cache));
    }

    /// Folds the batch statistics of the last [`Layer::forward_train`] on `cache` into the
    /// running statistics kept in `params` (once: a second call without a new training
    /// forward changes nothing). Nothing for layers without running statistics. The
    /// training steps that update parameters ([`crate::train_step`] and its variants) call
    /// it after the optimiser; after [`crate::compute_gradients`] or
    /// [`crate::accumulate_gradients`] call it yourself.
    ///
    /// ```
    /// use gradguard::{BatchNorm, Layer, Zeroed};
    /// let bn = BatchNorm::<1>::default();
    /// let mut p = <BatchNorm<1> as Layer>::Params::ZEROED;
    /// p.scale = [1.0];
    /// p.running_variance = [1.0];
    /// let mut cache = <BatchNorm<1> as Layer>::Cache::<2>::ZEROED;
    /// bn.forward_train(&p, &[[1.0], [3.0]], &mut cache);
    /// bn.update_running_statistics(&mut p, &mut cache);
    /// // PyTorch's defaults: momentum 0.1, unbiased variance (here 2).
    /// assert_eq!((p.running_mean, p.running_variance), ([0.2], [1.1]));
    /// bn.update_running_statistics(&mut p, &mut cache);
    /// assert_eq!(p.running_mean, [0.2]);
    /// ```
    #[inline]
    fn update_running_statistics<const B: usize>(
        &self,
        _params: &mut Self::Params,
        _cache: &mut Self::Cache<B>,
    ) {
    }

    /// Backpropagates `dy = ∂L/∂output` (see the trait docs for the contract), writing
    /// the parameter gradients per `context.mode` and reporting to `context.observer`.
    /// Implement this; call [`Layer::backward`] or [`Layer::backward_observed`].
    #[allow(clippy::too_many_arguments)]
    fn backward_at<K: Isa, O: GradientObserver, const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
        dy: &[Self::Output; B],
        grads: &mut Self::Params,
        dx: Option<&mut [Self::Input; B]>,
        context: &mut BackwardContext<'_, O, K>,
    );

    /// Backpropagates `dy = ∂L/∂output` without health tracking.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn backward<const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
        dy: &[Self::Output; B],
        grads: &mut Self::Params,
        dx: Option<&mut [Self::Input; B]>,
        mode: GradMode,
    ) {
        with_isa!(isa => {
            let mut context = BackwardContext {
                isa,
                mode,
                observer: &mut NoHealth,
                layer: 0,
            };
            self.backward_at(params, x, cache, dy, grads, dx, &mut context);
        });
    }

    /// Backpropagates `dy = ∂L/∂output` and records each dense layer's gradient health in
    /// `observer` (output layer first). See [`crate::health`].
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn backward_observed<O: GradientObserver, const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
        dy: &[Self::Output; B],
        grads: &mut Self::Params,
        dx: Option<&mut [Self::Input; B]>,
        mode: GradMode,
        observer: &mut O,
    ) {
        with_isa!(isa => {
            let mut context = BackwardContext {
                isa,
                mode,
                observer: &mut *observer,
                layer: 0,
            };
            self.backward_at(params, x, cache, dy, grads, dx, &mut context);
        });
    }

    /// Composes `self` followed by `next` (shapes checked at compile time).
    ///
    /// ```
    /// use gradguard::{Dense, Layer, Sigmoid};
    /// let net = Dense::<4, 8, Sigmoid>::default().then(Dense::<8, 2>::default());
    /// # let _ = net;
    /// ```
    fn then<N: Layer<Input = Self::Output>>(self, next: N) -> Chain<Self, N>
    where
        Self: Sized,
    {
        Chain::new(self, next)
    }
}

/// Weights and bias of a [`Dense`] layer (also its gradients).
///
/// Where gradguard has SIMD backends (x86_64, aarch64, wasm32 with simd128) this struct, the
/// layers' caches and everything holding them start on a cache line (64 bytes), so a row of
/// W whose length is a multiple of 16 never straddles two lines (rows 16 bytes off made the
/// batch-1 dX 1.5× slower on AVX-512). On a microcontroller they keep f32's alignment and
/// spend no RAM on padding. Input batches are yours: aligned ones are faster too.
///
/// ```
/// use gradguard::{DenseParams, Zeroed};
/// static P: DenseParams<3, 2> = DenseParams::ZEROED;
/// assert_eq!(P.weights.len(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(gradguard_simd, repr(align(64)))]
pub struct DenseParams<const IN: usize, const OUT: usize> {
    /// `OUT × IN`, row-major: `weights[o][i]` connects input `i` to unit `o`.
    pub weights: [[f32; IN]; OUT],
    /// One bias per unit.
    pub bias: [f32; OUT],
}

impl<const IN: usize, const OUT: usize> Zeroed for DenseParams<IN, OUT> {
    const ZEROED: Self = DenseParams {
        weights: [[0.0; IN]; OUT],
        bias: [0.0; OUT],
    };
}

impl<const IN: usize, const OUT: usize> Parameters for DenseParams<IN, OUT> {
    const TENSORS: usize = 2;
    const LAYERS: usize = 1;
    const SCALARS: usize = IN * OUT + OUT;
    fn tensor(&self, i: usize) -> &[f32] {
        match i {
            0 => self.weights.as_flattened(),
            1 => &self.bias,
            _ => &[],
        }
    }
    fn tensor_mut(&mut self, i: usize) -> &mut [f32] {
        match i {
            0 => self.weights.as_flattened_mut(),
            1 => &mut self.bias,
            _ => &mut [],
        }
    }
    fn tensor_info(i: usize) -> Option<TensorInfo> {
        let (kind, cols) = match i {
            0 => (TensorKind::Weight, IN),
            1 => (TensorKind::Bias, 1),
            _ => return None,
        };
        Some(TensorInfo {
            layer: 0,
            kind,
            rows: OUT,
            cols,
        })
    }
}

/// Forward cache of a [`Dense`] layer for a batch of `B`.
///
/// ```
/// use gradguard::{DenseCache, Zeroed};
/// assert_eq!(core::mem::size_of::<DenseCache<10, 32>>(), 3 * 10 * 32 * 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(gradguard_simd, repr(align(64)))]
pub struct DenseCache<const OUT: usize, const B: usize> {
    /// z = x·Wᵀ + b.
    pub pre_activation: [[f32; OUT]; B],
    /// a = f(z), the layer's output.
    pub output: [[f32; OUT]; B],
    /// ∂L/∂z from the last backward.
    pub pre_activation_grad: [[f32; OUT]; B],
}

impl<const OUT: usize, const B: usize> Zeroed for DenseCache<OUT, B> {
    const ZEROED: Self = DenseCache {
        pre_activation: [[0.0; OUT]; B],
        output: [[0.0; OUT]; B],
        pre_activation_grad: [[0.0; OUT]; B],
    };
}

/// A fully connected layer `a = f(x·Wᵀ + b)` with `IN` inputs, `OUT` units and activation
/// `A` (default [`Identity`]), fused so backward computes `dz = dy ⊙ f'(z)` in one pass.
///
/// Weights are `OUT × IN` row-major. Backward computes `dW = dzᵀ·x`, `db = Σ_batch dz` and
/// `dx = dz·W`.
///
/// ```
/// use gradguard::{Dense, Layer, Sigmoid, Zeroed};
/// let layer = Dense::<2, 1, Sigmoid>::default();
/// let params = gradguard::DenseParams { weights: [[1.0, -1.0]], bias: [0.0] };
/// let mut cache = gradguard::DenseCache::<1, 1>::ZEROED;
/// layer.forward(&params, &[[3.0, 3.0]], &mut cache);
/// assert_eq!(cache.output, [[0.5]]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dense<const IN: usize, const OUT: usize, A: Activation = Identity> {
    /// The activation applied to the pre-activations.
    pub activation: A,
}

impl<const IN: usize, const OUT: usize, A: Activation> Dense<IN, OUT, A> {
    /// A dense layer with the given activation (usable in `const`).
    ///
    /// ```
    /// use gradguard::{Dense, LeakyRelu};
    /// const L: Dense<8, 4, LeakyRelu> = Dense::new(LeakyRelu::new(0.2));
    /// assert_eq!(L.activation.alpha, 0.2);
    /// ```
    pub const fn new(activation: A) -> Self {
        Dense { activation }
    }
}

impl<const IN: usize, const OUT: usize, A: Activation> Layer for Dense<IN, OUT, A> {
    type Input = [f32; IN];
    type Output = [f32; OUT];
    type Params = DenseParams<IN, OUT>;
    type Cache<const B: usize> = DenseCache<OUT, B>;

    fn init<R: Rng + ?Sized>(&self, params: &mut Self::Params, scheme: Init, rng: &mut R) {
        init::fill(params.weights.as_flattened_mut(), IN, OUT, scheme, rng);
        params.bias = [0.0; OUT];
    }

    fn forward_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        _phase: Phase,
        params: &Self::Params,
        x: &[[f32; IN]; B],
        cache: &mut Self::Cache<B>,
    ) {
        isa.dense_forward(&params.weights, &params.bias, x, &mut cache.pre_activation);
        let (z, a) = (
            cache.pre_activation.as_flattened(),
            cache.output.as_flattened_mut(),
        );
        self.activation.forward_on(isa, z, a, OUT);
    }

    fn output<const B: usize>(cache: &Self::Cache<B>) -> &[[f32; OUT]; B] {
        &cache.output
    }

    fn backward_at<K: Isa, O: GradientObserver, const B: usize>(
        &self,
        params: &Self::Params,
        x: &[[f32; IN]; B],
        cache: &mut Self::Cache<B>,
        dy: &[[f32; OUT]; B],
        grads: &mut Self::Params,
        dx: Option<&mut [[f32; IN]; B]>,
        context: &mut BackwardContext<'_, O, K>,
    ) {
        let (isa, mode, layer) = (context.isa, context.mode, context.layer);
        let observer = &mut *context.observer;
        let health = if O::ENABLED {
            observer.next_layer()
        } else {
            None
        };
        let (z, a) = (
            cache.pre_activation.as_flattened(),
            cache.output.as_flattened(),
        );
        let dz_flat = cache.pre_activation_grad.as_flattened_mut();
        let mut health = health;
        match health.as_deref_mut() {
            None => self
                .activation
                .backward_on(isa, z, a, dy.as_flattened(), dz_flat, OUT),
            Some(h) => {
                h.layer = layer;
                h.activation = A::NAME;
                h.units = u16::try_from(OUT).unwrap_or(u16::MAX);
                h.inputs = u16::try_from(IN).unwrap_or(u16::MAX);
                let dy = dy.as_flattened();
                self.activation
                    .backward_observed_on(isa, z, a, dy, dz_flat, OUT, h);
            }
        }
        // One call site per kernel, tracked or not (a firmware links one copy of each).
        let (w, dz) = (&params.weights, &cache.pre_activation_grad);
        isa.dense_backward_params(dz, x, &mut grads.weights, &mut grads.bias, mode);
        let min_w = health.as_deref_mut().map(|h| {
            let (dw, db) = (&grads.weights, &grads.bias);
            crate::health::dense_parameters(isa, w, x, dz, dw, db, mode, dx.is_some(), h)
        });
        if let Some(dx) = dx {
            isa.dense_backward_input(w, dz, dx);
            if let (Some(h), Some(min_w)) = (health, min_w) {
                crate::health::dense_input_products(w, dz, min_w, h);
            }
        }
    }
}

/// Forward cache of an [`ActivationLayer`].
///
/// ```
/// use gradguard::{ActivationCache, Zeroed};
/// let c = ActivationCache::<4, 2>::ZEROED;
/// assert_eq!(c.output, [[0.0; 4]; 2]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(gradguard_simd, repr(align(64)))]
pub struct ActivationCache<const N: usize, const B: usize> {
    /// a = f(x), the layer's output.
    pub output: [[f32; N]; B],
}

impl<const N: usize, const B: usize> Zeroed for ActivationCache<N, B> {
    const ZEROED: Self = ActivationCache {
        output: [[0.0; N]; B],
    };
}

/// An activation as a layer of its own, on rows of `N` (for example a [`crate::Softmax`]
/// after a [`Dense`] whose own activation is [`Identity`]).
///
/// ```
/// use gradguard::{ActivationLayer, Dense, Layer, Softmax};
/// let net = Dense::<4, 3>::default().then(ActivationLayer::<Softmax, 3>::default());
/// # let _ = net;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ActivationLayer<A: Activation, const N: usize> {
    /// The activation.
    pub activation: A,
}

impl<A: Activation, const N: usize> ActivationLayer<A, N> {
    /// An activation layer (usable in `const`).
    ///
    /// ```
    /// use gradguard::{ActivationLayer, Tanh};
    /// const L: ActivationLayer<Tanh, 5> = ActivationLayer::new(Tanh);
    /// # let _ = L;
    /// ```
    pub const fn new(activation: A) -> Self {
        ActivationLayer { activation }
    }
}

impl<A: Activation, const N: usize> Layer for ActivationLayer<A, N> {
    type Input = [f32; N];
    type Output = [f32; N];
    type Params = NoParameters;
    type Cache<const B: usize> = ActivationCache<N, B>;

    fn init<R: Rng + ?Sized>(&self, _params: &mut NoParameters, _init: Init, _rng: &mut R) {}

    fn forward_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        _phase: Phase,
        _params: &NoParameters,
        x: &[[f32; N]; B],
        cache: &mut Self::Cache<B>,
    ) {
        let (z, a) = (x.as_flattened(), cache.output.as_flattened_mut());
        self.activation.forward_on(isa, z, a, N);
    }

    fn output<const B: usize>(cache: &Self::Cache<B>) -> &[[f32; N]; B] {
        &cache.output
    }

    /// Standalone activation layers have no parameters and make no health record (put
    /// the activation into a [`Dense`] to have it tracked).
    fn backward_at<K: Isa, O: GradientObserver, const B: usize>(
        &self,
        _params: &NoParameters,
        x: &[[f32; N]; B],
        cache: &mut Self::Cache<B>,
        dy: &[[f32; N]; B],
        _grads: &mut NoParameters,
        dx: Option<&mut [[f32; N]; B]>,
        context: &mut BackwardContext<'_, O, K>,
    ) {
        if let Some(dx) = dx {
            self.activation.backward_on(
                context.isa,
                x.as_flattened(),
                cache.output.as_flattened(),
                dy.as_flattened(),
                dx.as_flattened_mut(),
                N,
            );
        }
    }
}

/// Forward cache of a [`Chain`]: both layers' caches and the gradient at the boundary.
///
/// ```
/// use gradguard::{ChainCache, Zeroed};
/// let c: ChainCache<[f32; 1], [f32; 1], [[f32; 3]; 2]> = ChainCache::ZEROED;
/// assert_eq!(c.boundary_grad, [[0.0; 3]; 2]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChainCache<First, Second, Boundary> {
    /// Cache of the first layer (its output is the second layer's input).
    pub first: First,
    /// Cache of the second layer.
    pub second: Second,
    /// ∂L/∂(first layer's output), written by the second layer's backward.
    pub boundary_grad: Boundary,
}

impl<First: Zeroed, Second: Zeroed, Boundary: Zeroed> Zeroed
    for ChainCache<First, Second, Boundary>
{
    const ZEROED: Self = ChainCache {
        first: First::ZEROED,
        second: Second::ZEROED,
        boundary_grad: Boundary::ZEROED,
    };
}

/// `first` followed by `second`; the type only exists if the shapes match.
///
/// ```
/// use gradguard::{Chain, Dense, Layer, Relu};
/// const NET: Chain<Dense<64, 32, Relu>, Dense<32, 10>> = Chain::new(Dense::new(Relu), Dense::new(gradguard::Identity));
/// # let _ = NET;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Chain<First: Layer, Second: Layer<Input = First::Output>> {
    /// The input-side layer.
    pub first: First,
    /// The output-side layer.
    pub second: Second,
}

impl<First: Layer, Second: Layer<Input = First::Output>> Chain<First, Second> {
    /// Composes two layers (usable in `const`).
    ///
    /// ```
    /// use gradguard::{Chain, Dense};
    /// let net = Chain::new(Dense::<3, 4>::default(), Dense::<4, 1>::default());
    /// # let _ = net;
    /// ```
    pub const fn new(first: First, second: Second) -> Self {
        Chain { first, second }
    }
}

impl<First: Layer, Second: Layer<Input = First::Output>> Layer for Chain<First, Second> {
    type Input = First::Input;
    type Output = Second::Output;
    type Params = Pair<First::Params, Second::Params>;
    type Cache<const B: usize> = ChainCache<First::Cache<B>, Second::Cache<B>, [First::Output; B]>;

    fn init<R: Rng + ?Sized>(&self, params: &mut Self::Params, init: Init, rng: &mut R) {
        self.first.init(&mut params.first, init, rng);
        self.second.init(&mut params.second, init, rng);
    }

    fn forward_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        phase: Phase,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
    ) {
        self.first
            .forward_on(isa, phase, &params.first, x, &mut cache.first);
        let hidden = First::output(&cache.first);
        self.second
            .forward_on(isa, phase, &params.second, hidden, &mut cache.second);
    }

    fn output<const B: usize>(cache: &Self::Cache<B>) -> &[Self::Output; B] {
        Second::output(&cache.second)
    }

    fn update_running_statistics<const B: usize>(
        &self,
        params: &mut Self::Params,
        cache: &mut Self::Cache<B>,
    ) {
        self.first
            .update_running_statistics(&mut params.first, &mut cache.first);
        self.second
            .update_running_statistics(&mut params.second, &mut cache.second);
    }

    fn backward_at<K: Isa, O: GradientObserver, const B: usize>(
        &self,
        params: &Self::Params,
        x: &[Self::Input; B],
        cache: &mut Self::Cache<B>,
        dy: &[Self::Output; B],
        grads: &mut Self::Params,
        dx: Option<&mut [Self::Input; B]>,
        context: &mut BackwardContext<'_, O, K>,
    ) {
        let (isa, mode, layer) = (context.isa, context.mode, context.layer);
        let observer = &mut *context.observer;
        let hidden = First::output(&cache.first);
        let second_layer = layer.saturating_add(
            u16::try_from(<First::Params as Parameters>::LAYERS).unwrap_or(u16::MAX),
        );
        self.second.backward_at(
            &params.second,
            hidden,
            &mut cache.second,
            dy,
            &mut grads.second,
            Some(&mut cache.boundary_grad),
            &mut BackwardContext {
                isa,
                mode,
                observer: &mut *observer,
                layer: second_layer,
            },
        );
        self.first.backward_at(
            &params.first,
            x,
            &mut cache.first,
            &cache.boundary_grad,
            &mut grads.first,
            dx,
            &mut BackwardContext {
                isa,
                mode,
                observer,
                layer,
            },
        );
    }
}

/// The type of a sequence of layers: `Seq![A, B, C]` is `Chain<A, Chain<B, C>>`.
///
/// ```
/// use gradguard::{Dense, Layer, Relu, Seq};
/// type Net = Seq![Dense<64, 32, Relu>, Dense<32, 32, Relu>, Dense<32, 10>];
/// let net = Net::default();
/// # let _ = net;
/// ```
#[macro_export]
macro_rules! Seq {
    ($layer:ty $(,)?) => { $layer };
    ($layer:ty, $($rest:ty),+ $(,)?) => { $crate::Chain<$layer, $crate::Seq![$($rest),+]> };
}
