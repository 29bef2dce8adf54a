//! The gradient pass (forward, loss, backward, compiled for one instruction set), the
//! workspace it writes, the step guard's types and the memory a network needs. The
//! training steps that also update the parameters are [`crate::Trainer`]'s.

use crate::error::Error;
use crate::health::GradientObserver;
use crate::kernels::{with_isa, GradMode, Isa};
use crate::layer::{BackwardContext, Layer, Phase};
use crate::loss::Loss;
use crate::storage::Zeroed;

/// Everything a training step writes besides parameters and gradients: the network's
/// forward cache and the gradient of the loss with respect to the network output.
///
/// ```
/// use gradguard::{Dense, Workspace, Zeroed};
/// static mut WS: Workspace<Dense<4, 2>, 8> = Workspace::ZEROED;
/// ```
pub struct Workspace<L: Layer, const B: usize> {
    /// The network's forward cache (holds its output).
    pub cache: L::Cache<B>,
    /// ∂loss/∂output, written by the loss.
    pub output_grad: [L::Output; B],
}

impl<L: Layer, const B: usize> core::fmt::Debug for Workspace<L, B> {
    /// The batch size and the sizes (the arrays themselves are too large to print).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Workspace")
            .field("batch", &B)
            .field("bytes", &core::mem::size_of::<Self>())
            .finish_non_exhaustive()
    }
}

impl<L: Layer, const B: usize> Zeroed for Workspace<L, B> {
    const ZEROED: Self = Workspace {
        cache: <L::Cache<B> as Zeroed>::ZEROED,
        output_grad: [L::Output::ZEROED; B],
    };
}

/// Bytes of memory one training step of `L` with batch `B` needs: parameters, gradients
/// and the [`Workspace`] (add `size_of` of the optimiser for its state; the input batch and
/// targets are the caller's).
///
/// On a microcontroller this is the sum of the arrays. Where gradguard has SIMD backends
/// (x86_64, aarch64, wasm32 with simd128) each layer's parameters and cache start on a
/// cache line (64 bytes), which pads a struct whose arrays do not fill its last line.
///
/// ```
/// use gradguard::{training_bytes, Dense, Relu, Seq};
/// type Net = Seq![Dense<64, 32, Relu>, Dense<32, 16>];
/// const BYTES: usize = training_bytes::<Net, 32>();
/// let params = (64 * 32 + 32) + (32 * 16 + 16);
/// let cache = 3 * 32 * (32 + 16) + 32 * 32; // z, a, dz per layer + boundary gradient
/// // Every array here fills whole cache lines, so no target pads.
/// assert_eq!(BYTES, 4 * (2 * params + cache + 32 * 16));
/// ```
#[must_use]
pub const fn training_bytes<L: Layer, const B: usize>() -> usize {
    2 * core::mem::size_of::<L::Params>() + core::mem::size_of::<Workspace<L, B>>()
}

/// Forward (training: [`Layer::forward_train`]), loss and backward on a batch without an
/// optimiser step: overwrites `grads` with the gradient of the mean loss and returns the
/// loss. Batch norms' running statistics are not updated (`params` is shared): call
/// [`Layer::update_running_statistics`] when you apply the gradients. Observed by `observer` (pass
/// `&mut NoHealth` for none; a [`crate::health::HealthReport`] is not reset here).
///
/// ```
/// use gradguard::health::NoHealth;
/// use gradguard::{compute_gradients, Dense, Layer, MeanSquaredError, Workspace, Zeroed};
/// type Net = Dense<1, 1>;
/// let mut p = <Net as Layer>::Params::ZEROED;
/// p.weights = [[2.0]];
/// let mut g = <Net as Layer>::Params::ZEROED;
/// let mut ws = Workspace::<Net, 1>::ZEROED;
/// let loss = compute_gradients(&Net::default(), &p, &mut g, &mut ws, &MeanSquaredError,
///                              &[[1.0]], &[[0.0]], &mut NoHealth)?;
/// assert_eq!((loss, g.weights, g.bias), (4.0, [[4.0]], [4.0]));
/// # Ok::<(), gradguard::Error>(())
/// ```
///
/// # Errors
/// The loss's ([`Loss::loss_and_gradient`]): an invalid label or target; the parameters are
/// untouched, the forward cache and `grads` may be written.
#[allow(clippy::too_many_arguments)]
pub fn compute_gradients<L, F, H, const N: usize, const B: usize>(
    net: &L,
    params: &L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, B>,
    loss: &F,
    x: &[L::Input; B],
    targets: &[F::Target; B],
    observer: &mut H,
) -> Result<f32, Error>
where
    L: Layer<Output = [f32; N]>,
    F: Loss<N>,
    H: GradientObserver,
{
    with_isa!(isa => forward_backward(isa, net, params, grads, workspace, loss, x, targets, Pass::WHOLE, observer))
}

/// How one forward-backward pass writes its gradients: overwritten or accumulated, and the
/// share of the batch's loss it carries (micro-batches).
#[derive(Clone, Copy)]
pub(crate) struct Pass {
    pub(crate) mode: GradMode,
    pub(crate) share: f32,
}

impl Pass {
    /// The whole batch, gradients overwritten.
    pub(crate) const WHOLE: Pass = Pass {
        mode: GradMode::Overwrite,
        share: 1.0,
    };
}

/// Forward (training), loss, the output gradient scaled by `pass.share`, and the observed
/// backward: the whole pass compiled for the instruction set `isa`, chosen once by the
/// caller. Returns the loss times the share.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_backward<K, L, F, H, const N: usize, const B: usize>(
    isa: K,
    net: &L,
    params: &L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, B>,
    loss: &F,
    x: &[L::Input; B],
    targets: &[F::Target; B],
    pass: Pass,
    observer: &mut H,
) -> Result<f32, Error>
where
    K: Isa,
    L: Layer<Output = [f32; N]>,
    F: Loss<N>,
    H: GradientObserver,
{
    net.forward_on(isa, Phase::Training, params, x, &mut workspace.cache);
    let value = loss.loss_and_gradient_on(
        isa,
        L::output(&workspace.cache),
        targets,
        &mut workspace.output_grad,
    )?;
    if pass.share != 1.0 {
        for g in workspace.output_grad.iter_mut().flatten() {
            *g *= pass.share;
        }
    }
    let mut context = BackwardContext {
        isa,
        mode: pass.mode,
        observer,
        layer: 0,
    };
    net.backward_at(
        params,
        x,
        &mut workspace.cache,
        &workspace.output_grad,
        grads,
        None,
        &mut context,
    );
    Ok(value * pass.share)
}

/// Index of the largest element (the first one on ties; NaN elements are never chosen
/// unless all are NaN, then 0).
///
/// ```
/// assert_eq!(gradguard::argmax(&[0.1, 0.7, 0.2]), 1);
/// assert_eq!(gradguard::argmax(&[f32::NAN, 1.0]), 1);
/// ```
#[must_use]
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (k, &v) in row.iter().enumerate() {
        if v > best_value {
            best = k;
            best_value = v;
        }
    }
    best
}

/// What [`Trainer::step_guarded`](crate::Trainer::step_guarded) does to a step's gradients before the optimiser sees them:
/// it always refuses a step whose loss or gradients are not finite, and optionally clips
/// the gradients by value and by global norm.
///
/// ```
/// use gradguard::StepGuard;
/// let guard = StepGuard::SKIP_NON_FINITE.with_max_norm(1.0)?.with_max_value(0.5)?;
/// assert_eq!((guard.max_norm(), guard.max_value()), (Some(1.0), Some(0.5)));
/// assert!(StepGuard::SKIP_NON_FINITE.with_max_norm(0.0).is_err());
/// # Ok::<(), gradguard::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepGuard {
    max_norm: Option<f32>,
    max_value: Option<f32>,
}

impl StepGuard {
    /// Only refuse non-finite steps; no clipping.
    pub const SKIP_NON_FINITE: StepGuard = StepGuard {
        max_norm: None,
        max_value: None,
    };

    /// Clips the global L2 norm of all gradients (every tensor of every layer together) to
    /// `max_norm` (finite, > 0), like PyTorch's `clip_grad_norm_`: when the norm ‖g‖
    /// exceeds `max_norm`, every gradient is multiplied by `max_norm/‖g‖` (PyTorch adds
    /// 1e-6 to ‖g‖; this does not, so the clipped norm is `max_norm` within rounding for
    /// gradients of any scale). The norm is computed scaled, so it neither overflows nor
    /// underflows.
    ///
    /// ```
    /// assert!(gradguard::StepGuard::SKIP_NON_FINITE.with_max_norm(f32::NAN).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"max_norm"`) unless it is finite and positive.
    pub fn with_max_norm(self, max_norm: f32) -> Result<Self, Error> {
        Ok(StepGuard {
            max_norm: Some(positive("max_norm", max_norm)?),
            ..self
        })
    }

    /// Clamps every gradient entry to `[-max_value, max_value]` (finite, > 0), like PyTorch's
    /// `clip_grad_value_`; applied before norm clipping.
    ///
    /// ```
    /// assert!(gradguard::StepGuard::SKIP_NON_FINITE.with_max_value(-1.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"max_value"`) unless it is finite and positive.
    pub fn with_max_value(self, max_value: f32) -> Result<Self, Error> {
        Ok(StepGuard {
            max_value: Some(positive("max_value", max_value)?),
            ..self
        })
    }

    /// The global-norm limit, if any.
    ///
    /// ```
    /// assert_eq!(gradguard::StepGuard::SKIP_NON_FINITE.max_norm(), None);
    /// ```
    #[must_use]
    pub fn max_norm(&self) -> Option<f32> {
        self.max_norm
    }

    /// The per-entry limit, if any.
    ///
    /// ```
    /// assert_eq!(gradguard::StepGuard::SKIP_NON_FINITE.max_value(), None);
    /// ```
    #[must_use]
    pub fn max_value(&self) -> Option<f32> {
        self.max_value
    }
}

fn positive(name: &'static str, v: f32) -> Result<f32, Error> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::InvalidHyperparameter(name, v))
    }
}

/// What [`Trainer::step_guarded`](crate::Trainer::step_guarded) did.
///
/// ```
/// use gradguard::StepOutcome;
/// let skipped = StepOutcome::Skipped { loss: f32::NAN, non_finite_gradients: 3 };
/// assert!(!skipped.applied());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The optimiser updated the parameters.
    Applied {
        /// Mean loss of the batch.
        loss: f32,
        /// Global L2 norm of the gradients before norm clipping (after value clipping).
        gradient_norm: f32,
        /// Whether value or norm clipping changed a gradient.
        clipped: bool,
    },
    /// The loss or a gradient was NaN or ±∞: parameters and optimiser state are untouched
    /// (the gradients are left as computed, for inspection).
    Skipped {
        /// Mean loss of the batch (possibly NaN or ±∞).
        loss: f32,
        /// Number of NaN and ±∞ gradient entries.
        non_finite_gradients: u64,
    },
}

impl StepOutcome {
    /// True if the parameters were updated.
    ///
    /// ```
    /// let done = gradguard::StepOutcome::Applied { loss: 0.5, gradient_norm: 1.0, clipped: false };
    /// assert!(done.applied());
    /// ```
    #[must_use]
    pub fn applied(&self) -> bool {
        matches!(self, StepOutcome::Applied { .. })
    }
}

/// Which micro-batch of a batch split into `count` equal parts a call of
/// [`accumulate_gradients`] computes (`index` from 0).
///
/// ```
/// let part = gradguard::MicroBatch { index: 0, count: 4 };
/// assert_eq!(part.count, 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroBatch {
    /// 0 for the first micro-batch (which overwrites the gradients), then 1, 2, …
    pub index: usize,
    /// Number of micro-batches making up the batch (≥ 1).
    pub count: usize,
}

/// Gradient accumulation over micro-batches, for a device whose RAM holds the workspace of
/// a batch of `B` but not of the `count·B` samples the optimiser step should see.
///
/// Call it for `index = 0..count` (each with its `B` samples; batch norms normalise each
/// micro-batch by its own statistics, and their running statistics are updated only if you
/// call [`Layer::update_running_statistics`] after each call), then step the optimiser
/// once: the gradients are those of the mean loss over all `count·B` samples (each
/// micro-batch's loss gradient is scaled by 1/`count`; the first call overwrites, the
/// others add). Returns this micro-batch's share of the mean loss (its mean / `count`), so
/// the returns add up to the full batch's mean loss.
///
/// Samples are added to dW and db in the same order as one backward pass over the whole
/// batch would add them, so when `count` and `B` are powers of two (scaling exact) the
/// gradients are bit for bit those of the full batch on backends without FMA and within
/// [`crate::kernels::matrix_error_bound`] with it; otherwise each loss gradient carries one
/// more rounding (half an ulp) from the 1/`count` scaling.
///
/// ```
/// use gradguard::health::NoHealth;
/// use gradguard::{accumulate_gradients, Dense, Layer, MeanSquaredError, MicroBatch, Workspace, Zeroed};
/// type Net = Dense<1, 1>;
/// let p = <Net as Layer>::Params::ZEROED;
/// let mut g = <Net as Layer>::Params::ZEROED;
/// let mut ws = Workspace::<Net, 1>::ZEROED;
/// let (xs, ys) = ([[1.0], [2.0]], [[1.0], [3.0]]);
/// let mut loss = 0.0;
/// for index in 0..2 {
///     let part = MicroBatch { index, count: 2 };
///     loss += accumulate_gradients(&Net::default(), &p, &mut g, &mut ws, &MeanSquaredError,
///                                  &[xs[index]], &[ys[index]], part, &mut NoHealth)?;
/// }
/// assert_eq!(loss, (1.0 + 9.0) / 2.0);
/// assert_eq!(g.weights, [[-(2.0 * 1.0 + 2.0 * 3.0 * 2.0) / 2.0]]);
/// # Ok::<(), gradguard::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidHyperparameter`] (`"micro_batch"`) if `count` is 0 or `index ≥ count`
/// (nothing changed); the loss's errors as for [`compute_gradients`].
#[allow(clippy::too_many_arguments)]
pub fn accumulate_gradients<L, F, H, const N: usize, const B: usize>(
    net: &L,
    params: &L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, B>,
    loss: &F,
    x: &[L::Input; B],
    targets: &[F::Target; B],
    part: MicroBatch,
    observer: &mut H,
) -> Result<f32, Error>
where
    L: Layer<Output = [f32; N]>,
    F: Loss<N>,
    H: GradientObserver,
{
    if part.count == 0 || part.index >= part.count {
        return Err(Error::InvalidHyperparameter(
            "micro_batch",
            part.index as f32,
        ));
    }
    let pass = Pass {
        mode: if part.index == 0 {
            GradMode::Overwrite
        } else {
            GradMode::Accumulate
        },
        share: 1.0 / part.count as f32,
    };
    with_isa!(isa => forward_backward(isa, net, params, grads, workspace, loss, x, targets, pass, observer))
}
