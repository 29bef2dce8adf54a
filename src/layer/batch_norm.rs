//! Batch normalization (Ioffe & Szegedy, 2015) with PyTorch's `BatchNorm1d` semantics.

use super::{BackwardContext, Layer, Phase};
use crate::activation::{Activation, Identity};
use crate::error::Error;
use crate::health::GradientObserver;
use crate::init::Init;
use crate::kernels::{self, BatchNormBackward, GradMode, Isa};
use crate::storage::{Parameters, TensorInfo, TensorKind, Zeroed};
use rand_core::Rng;

/// Batch normalization of `N` features, then the activation `A` (default [`Identity`]):
/// `a = f(γ·(x − μ)/√(σ² + ε) + β)`, per feature.
///
/// PyTorch's `BatchNorm1d` semantics and defaults:
/// * [`Layer::forward_train`] (what the training steps call) normalises with the batch's
///   own mean μ and biased variance σ², and its backward is the exact batch-coupled
///   gradient. [`Layer::update_running_statistics`] (called by [`crate::train_step`] after
///   the optimiser) then folds them into the running statistics:
///   `running = (1 − m)·running + m·batch`, with the unbiased variance, momentum m = 0.1.
/// * [`Layer::forward`] (inference, any batch size including 1) uses the running mean and
///   variance: an affine map per feature.
/// * ε = 1e-5; [`Layer::init`] sets γ = 1, β = 0, running mean 0 and running variance 1.
///
/// γ ([`BatchNormParams::scale`]) and β ([`BatchNormParams::shift`]) are trained; the
/// running statistics are tensors of the parameters too, so they are saved and loaded with
/// them (images, safetensors with PyTorch's names), but their kind
/// ([`TensorKind::RunningMean`], [`TensorKind::RunningVariance`]) is not trainable:
/// optimisers, clipping and gradient norms skip them.
///
/// A training batch of one sample has variance 0: the output is f(β), every gradient
/// but dβ is 0, and the running statistics stay as they are (the unbiased variance is not
/// defined; PyTorch refuses such a batch). Statistics are computed stably: the mean shifted
/// by the first sample, the variance in a second pass over the deviations, so features with
/// a large mean (1e4 ± 1) keep their digits. The kernels give the same bits on every
/// backend.
///
/// The fused activation makes the layer report what a [`crate::Dense`] layer reports
/// (dead and saturated units, underflowed derivatives), with γ in the place of W.
///
/// ```
/// use gradguard::{BatchNorm, Dense, Layer, Sigmoid, Seq, Zeroed};
/// type Net = Seq![Dense<4, 3>, BatchNorm<3, Sigmoid>, Dense<3, 2>];
/// let net = Net::default();
/// let mut p = <Net as Layer>::Params::ZEROED;
/// net.init(&mut p, gradguard::init::Init::XavierUniform,
///          &mut <rand_xoshiro::Xoshiro256PlusPlus as rand_xoshiro::rand_core::SeedableRng>::seed_from_u64(1));
/// assert_eq!(p.second.first.scale, [1.0; 3]);
/// let mut cache = <Net as Layer>::Cache::<1>::ZEROED;
/// net.forward(&p, &[[1.0, 2.0, 3.0, 4.0]], &mut cache); // inference on one sample
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm<const N: usize, A: Activation = Identity> {
    /// The activation applied after the normalisation.
    pub activation: A,
    momentum: f32,
    epsilon: f32,
}

impl<const N: usize, A: Activation + Default> Default for BatchNorm<N, A> {
    fn default() -> Self {
        BatchNorm::new(A::default())
    }
}

impl<const N: usize, A: Activation> BatchNorm<N, A> {
    /// A batch norm with PyTorch's defaults (momentum 0.1, ε = 1e-5), usable in `const`.
    ///
    /// ```
    /// use gradguard::{BatchNorm, Relu};
    /// const BN: BatchNorm<16, Relu> = BatchNorm::new(Relu);
    /// assert_eq!((BN.momentum(), BN.epsilon()), (0.1, 1e-5));
    /// ```
    pub const fn new(activation: A) -> Self {
        BatchNorm {
            activation,
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    /// The same layer with another momentum of the running statistics.
    ///
    /// ```
    /// let bn = gradguard::BatchNorm::<4>::default().with_momentum(0.01)?;
    /// assert_eq!(bn.momentum(), 0.01);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"momentum"`) unless `0 ≤ momentum ≤ 1`.
    pub fn with_momentum(self, momentum: f32) -> Result<Self, Error> {
        if (0.0..=1.0).contains(&momentum) {
            Ok(BatchNorm { momentum, ..self })
        } else {
            Err(Error::InvalidHyperparameter("momentum", momentum))
        }
    }

    /// The same layer with another ε (added to the variance before the square root).
    ///
    /// ```
    /// assert!(gradguard::BatchNorm::<4>::default().with_epsilon(0.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"epsilon"`) unless ε is finite and at least
    /// `f32::MIN_POSITIVE` (so 1/√(σ² + ε) is finite).
    pub fn with_epsilon(self, epsilon: f32) -> Result<Self, Error> {
        if epsilon.is_finite() && epsilon >= f32::MIN_POSITIVE {
            Ok(BatchNorm { epsilon, ..self })
        } else {
            Err(Error::InvalidHyperparameter("epsilon", epsilon))
        }
    }

    /// The momentum m of `running = (1 − m)·running + m·batch`.
    ///
    /// ```
    /// assert_eq!(gradguard::BatchNorm::<4>::default().momentum(), 0.1);
    /// ```
    pub const fn momentum(&self) -> f32 {
        self.momentum
    }

    /// ε, added to the variance.
    ///
    /// ```
    /// assert_eq!(gradguard::BatchNorm::<4>::default().epsilon(), 1e-5);
    /// ```
    pub const fn epsilon(&self) -> f32 {
        self.epsilon
    }

    /// Folds this batch norm's inference map (its running statistics) into the dense layer
    /// before it, for deployment: `Dense<IN, N, A>` with the folded parameters computes
    /// what `Dense<IN, N>` followed by this `BatchNorm<N, A>` computes in inference, in one
    /// layer and without the batch norm's memory. With k = γ/√(running variance + ε):
    /// W'ₒ = kₒ·Wₒ and b'ₒ = kₒ·(bₒ − running meanₒ) + βₒ.
    ///
    /// The folded layer rounds differently (the scale is applied to each weight instead of
    /// the sum): the pre-activations agree within a few ulps of the terms' magnitudes, not
    /// bit for bit (`tests/batch_norm.rs` checks the bound against f64).
    ///
    /// ```
    /// use gradguard::{BatchNorm, BatchNormParams, Dense, DenseParams, Layer, Relu, Zeroed};
    /// let bn = BatchNorm::<2, Relu>::new(Relu);
    /// let stats = BatchNormParams { scale: [2.0, 1.0], shift: [0.5, 0.0],
    ///                               running_mean: [1.0, 0.0], running_variance: [4.0, 1.0] };
    /// let mut dense = DenseParams { weights: [[1.0, 0.0], [0.0, 1.0]], bias: [0.0; 2] };
    /// bn.fold_into(&stats, &mut dense);
    /// let mut cache = <Dense<2, 2, Relu> as Layer>::Cache::<1>::ZEROED;
    /// Dense::<2, 2, Relu>::new(Relu).forward(&dense, &[[3.0, -1.0]], &mut cache);
    /// // 2·(3 − 1)/√(4 + 1e-5) + 0.5 ≈ 2.5; relu(−1/√(1 + 1e-5)) = 0
    /// assert!((cache.output[0][0] - 2.5).abs() < 1e-5 && cache.output[0][1] == 0.0);
    /// ```
    pub fn fold_into<const IN: usize>(
        &self,
        statistics: &BatchNormParams<N>,
        dense: &mut super::DenseParams<IN, N>,
    ) {
        let per_unit = dense.weights.iter_mut().zip(dense.bias.iter_mut());
        let p = statistics;
        let stats = p
            .scale
            .iter()
            .zip(&p.shift)
            .zip(&p.running_mean)
            .zip(&p.running_variance);
        for ((row, bias), (((&gamma, &beta), &mean), &variance)) in per_unit.zip(stats) {
            let k = gamma * (1.0 / libm::sqrtf(variance + self.epsilon));
            for w in row.iter_mut() {
                *w *= k;
            }
            *bias = k * (*bias - mean) + beta;
        }
    }

    fn backward_constants(&self, batch_statistics: bool, mode: GradMode) -> BatchNormBackward {
        BatchNormBackward {
            features: N,
            epsilon: self.epsilon,
            batch_statistics,
            mode,
        }
    }
}

/// γ, β and the running statistics of a [`BatchNorm`] (also its gradients, in which the
/// running statistics stay 0).
///
/// ```
/// use gradguard::{BatchNormParams, Parameters, TensorKind, Zeroed};
/// static P: BatchNormParams<8> = BatchNormParams::ZEROED;
/// assert_eq!(BatchNormParams::<8>::tensor_info(2).map(|t| t.kind), Some(TensorKind::RunningMean));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(gradguard_simd, repr(align(64)))]
pub struct BatchNormParams<const N: usize> {
    /// γ, one per feature (PyTorch's `weight`).
    pub scale: [f32; N],
    /// β, one per feature (PyTorch's `bias`).
    pub shift: [f32; N],
    /// The running mean (PyTorch's `running_mean`), not trained.
    pub running_mean: [f32; N],
    /// The running unbiased variance (PyTorch's `running_var`), not trained.
    pub running_variance: [f32; N],
}

impl<const N: usize> Zeroed for BatchNormParams<N> {
    const ZEROED: Self = BatchNormParams {
        scale: [0.0; N],
        shift: [0.0; N],
        running_mean: [0.0; N],
        running_variance: [0.0; N],
    };
}

impl<const N: usize> Parameters for BatchNormParams<N> {
    const TENSORS: usize = 4;
    const LAYERS: usize = 1;
    const SCALARS: usize = 4 * N;
    fn tensor(&self, i: usize) -> &[f32] {
        match i {
            0 => &self.scale,
            1 => &self.shift,
            2 => &self.running_mean,
            3 => &self.running_variance,
            _ => &[],
        }
    }
    fn tensor_mut(&mut self, i: usize) -> &mut [f32] {
        match i {
            0 => &mut self.scale,
            1 => &mut self.shift,
            2 => &mut self.running_mean,
            3 => &mut self.running_variance,
            _ => &mut [],
        }
    }
    fn tensor_info(i: usize) -> Option<TensorInfo> {
        let kind = match i {
            0 => TensorKind::Scale,
            1 => TensorKind::Bias,
            2 => TensorKind::RunningMean,
            3 => TensorKind::RunningVariance,
            _ => return None,
        };
        Some(TensorInfo {
            layer: 0,
            kind,
            rows: N,
            cols: 1,
        })
    }
}

/// Forward cache of a [`BatchNorm`] for a batch of `B`.
///
/// ```
/// use gradguard::{BatchNormCache, Zeroed};
/// static C: BatchNormCache<16, 32> = BatchNormCache::ZEROED;
/// assert_eq!(C.output.len(), 32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(gradguard_simd, repr(align(64)))]
pub struct BatchNormCache<const N: usize, const B: usize> {
    /// z = γ·x̂ + β.
    pub pre_activation: [[f32; N]; B],
    /// a = f(z), the layer's output.
    pub output: [[f32; N]; B],
    /// ∂L/∂z from the last backward.
    pub pre_activation_grad: [[f32; N]; B],
    /// The mean the last forward normalised with (the batch's, or the running one).
    pub mean: [f32; N],
    /// The variance the last forward normalised with (the batch's biased one, or the
    /// running one).
    pub variance: [f32; N],
    /// The batch's unbiased variance (last training forward), for the running statistics.
    pub unbiased_variance: [f32; N],
    /// The last forward was a training forward (batch statistics).
    batch_statistics: bool,
    /// Its statistics are not yet in the running ones.
    pending: bool,
}

impl<const N: usize, const B: usize> Zeroed for BatchNormCache<N, B> {
    const ZEROED: Self = BatchNormCache {
        pre_activation: [[0.0; N]; B],
        output: [[0.0; N]; B],
        pre_activation_grad: [[0.0; N]; B],
        mean: [0.0; N],
        variance: [0.0; N],
        unbiased_variance: [0.0; N],
        batch_statistics: false,
        pending: false,
    };
}

impl<const N: usize, A: Activation> BatchNorm<N, A> {
    /// z = γ·x̂ + β with the statistics in `cache`, then a = f(z).
    fn normalize<K: Isa, const B: usize>(
        &self,
        isa: K,
        params: &BatchNormParams<N>,
        x: &[[f32; N]; B],
        cache: &mut BatchNormCache<N, B>,
    ) {
        isa.batch_normalize(
            x.as_flattened(),
            N,
            &cache.mean,
            &cache.variance,
            self.epsilon,
            &params.scale,
            &params.shift,
            cache.pre_activation.as_flattened_mut(),
        );
        let (z, a) = (
            cache.pre_activation.as_flattened(),
            cache.output.as_flattened_mut(),
        );
        self.activation.forward_on(isa, z, a, N);
    }
}

impl<const N: usize, A: Activation> Layer for BatchNorm<N, A> {
    type Input = [f32; N];
    type Output = [f32; N];
    type Params = BatchNormParams<N>;
    type Cache<const B: usize> = BatchNormCache<N, B>;

    /// γ = 1, β = 0, running mean 0, running variance 1 (`init` and `rng` are not used).
    fn init<R: Rng + ?Sized>(&self, params: &mut Self::Params, _init: Init, _rng: &mut R) {
        params.scale = [1.0; N];
        params.shift = [0.0; N];
        params.running_mean = [0.0; N];
        params.running_variance = [1.0; N];
    }

    fn forward_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        phase: Phase,
        params: &Self::Params,
        x: &[[f32; N]; B],
        cache: &mut Self::Cache<B>,
    ) {
        match phase {
            Phase::Inference => {
                cache.mean = params.running_mean;
                cache.variance = params.running_variance;
                cache.batch_statistics = false;
                cache.pending = false;
            }
            Phase::Training => {
                isa.batch_statistics(
                    x.as_flattened(),
                    N,
                    &mut cache.mean,
                    &mut cache.variance,
                    &mut cache.unbiased_variance,
                );
                cache.batch_statistics = true;
                cache.pending = B > 1;
            }
        }
        self.normalize(isa, params, x, cache);
    }

    fn update_running_statistics<const B: usize>(
        &self,
        params: &mut Self::Params,
        cache: &mut Self::Cache<B>,
    ) {
        if cache.pending {
            kernels::running_average(&mut params.running_mean, &cache.mean, self.momentum);
            kernels::running_average(
                &mut params.running_variance,
                &cache.unbiased_variance,
                self.momentum,
            );
            cache.pending = false;
        }
    }

    fn output<const B: usize>(cache: &Self::Cache<B>) -> &[[f32; N]; B] {
        &cache.output
    }

    fn backward_at<K: Isa, O: GradientObserver, const B: usize>(
        &self,
        params: &Self::Params,
        x: &[[f32; N]; B],
        cache: &mut Self::Cache<B>,
        dy: &[[f32; N]; B],
        grads: &mut Self::Params,
        dx: Option<&mut [[f32; N]; B]>,
        context: &mut BackwardContext<'_, O, K>,
    ) {
        let (isa, mode, layer) = (context.isa, context.mode, context.layer);
        let observer = &mut *context.observer;
        let constants = self.backward_constants(cache.batch_statistics, mode);
        let dx = match dx {
            Some(dx) => dx.as_flattened_mut(),
            None => &mut [],
        };
        let mut health = if O::ENABLED {
            observer.next_layer()
        } else {
            None
        };
        let dz = cache.pre_activation_grad.as_flattened_mut();
        if let Some(h) = health.as_deref_mut() {
            h.layer = layer;
            h.kind = crate::health::LayerKind::BatchNorm;
            h.activation = A::NAME;
            h.units = u16::try_from(N).unwrap_or(u16::MAX);
            h.inputs = h.units;
            let (z, a) = (
                cache.pre_activation.as_flattened(),
                cache.output.as_flattened(),
            );
            self.activation
                .backward_observed_on(isa, z, a, dy.as_flattened(), dz, N, h);
        } else {
            let (z, a) = (
                cache.pre_activation.as_flattened(),
                cache.output.as_flattened(),
            );
            self.activation
                .backward_on(isa, z, a, dy.as_flattened(), dz, N);
        }
        let (x, dz) = (x.as_flattened(), cache.pre_activation_grad.as_flattened());
        let statistics = [&cache.mean, &cache.variance, &params.scale];
        let [mean, variance, gamma] = statistics.map(|s| s.as_slice());
        let (dgamma, dbeta) = (&mut grads.scale, &mut grads.shift);
        isa.batch_norm_backward(x, dz, mean, variance, gamma, dgamma, dbeta, dx, &constants);
        if let Some(h) = health {
            let norm = crate::health::BatchNormTerms {
                x,
                dz,
                mean,
                variance,
                gamma,
            };
            crate::health::batch_norm_backward(isa, &norm, dgamma, dbeta, dx, &constants, h);
        }
    }
}
