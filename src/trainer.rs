//! [`Trainer`]: the network, its parameters, gradients, workspace, optimiser and loss held
//! together, so a training loop calls `step(&x, &y)` instead of passing eight arguments;
//! and [`train_step`], a `Trainer` made for one call.

use crate::error::Error;
use crate::health::{GradientObserver, NoHealth, TensorStats};
use crate::kernels::{active_isa, with_isa, AnyIsa, Isa};
use crate::layer::{Layer, Phase};
use crate::loss::Loss;
use crate::optim::Optimizer;
use crate::storage::{is_trainable, Parameters, Zeroed};
use crate::train::{forward_backward, Pass, StepGuard, StepOutcome, Workspace};

/// Forward (training: [`Layer::forward_train`]), loss, backward and one optimiser update
/// on a batch, then the running statistics of batch norms
/// ([`Layer::update_running_statistics`]); returns the mean loss.
///
/// Gradients are overwritten. On `Err` (an invalid target) nothing has been changed
/// except the forward cache. NaN/∞ in inputs or parameters are not errors: they propagate
/// to the returned loss.
///
/// ```
/// use gradguard::{init::Init, train_step, Dense, Layer, Sgd, SoftmaxCrossEntropy, Zeroed, Workspace};
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// type Net = Dense<2, 2>;
/// let net = Net::default();
/// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
/// net.init(&mut p, Init::XavierUniform, &mut Xoshiro256PlusPlus::seed_from_u64(1));
/// let mut ws = Workspace::<Net, 2>::ZEROED;
/// let mut sgd = Sgd::new(0.5).unwrap();
/// let (x, y) = ([[1.0, 0.0], [0.0, 1.0]], [0, 1]);
/// let first = train_step(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy, &x, &y).unwrap();
/// for _ in 0..50 {
///     train_step(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy, &x, &y).unwrap();
/// }
/// let last = train_step(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy, &x, &y).unwrap();
/// assert!(last < first / 4.0);
/// ```
///
/// # Errors
/// The loss's: an out-of-range label or target (see above: nothing but the forward cache
/// changed).
#[allow(clippy::too_many_arguments)]
pub fn train_step<L, O, F, const N: usize, const B: usize>(
    net: &L,
    params: &mut L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, B>,
    optimizer: &mut O,
    loss: &F,
    x: &[L::Input; B],
    targets: &[F::Target; B],
) -> Result<f32, Error>
where
    L: Layer<Output = [f32; N]>,
    O: Optimizer<L::Params>,
    F: Loss<N>,
{
    Trainer::new(net, params, grads, workspace, optimizer, loss).step(x, targets)
}

/// A training loop's state, borrowed: the network, its parameters and gradients, the
/// [`Workspace`] of batch `B`, the optimiser and the loss. It owns nothing, so every part
/// can be a `static` on a microcontroller (nothing large passes through the stack), and
/// the parts stay reachable for saving or inspection ([`Trainer::params`]).
///
/// ```
/// use gradguard::{init::Init, Dense, Layer, Relu, Seq, Sgd, SoftmaxCrossEntropy, Trainer, Workspace, Zeroed};
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// type Net = Seq![Dense<2, 8, Relu>, Dense<8, 2>];
/// let net = Net::default();
/// let (mut params, mut grads) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
/// net.init(&mut params, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(3));
/// let mut workspace = Workspace::<Net, 4>::ZEROED;
/// let mut sgd = Sgd::new(0.5)?;
/// let mut trainer = Trainer::new(&net, &mut params, &mut grads, &mut workspace, &mut sgd, &SoftmaxCrossEntropy);
/// // XOR as two classes.
/// let (x, y) = ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0]);
/// for _ in 0..500 {
///     trainer.step(&x, &y)?;
/// }
/// let predicted: Vec<usize> = x.iter().map(|s| gradguard::argmax(&trainer.predict(s))).collect();
/// assert_eq!(predicted, y);
/// # Ok::<(), gradguard::Error>(())
/// ```
pub struct Trainer<'a, L: Layer, O, F, const B: usize> {
    net: &'a L,
    params: &'a mut L::Params,
    grads: &'a mut L::Params,
    workspace: &'a mut Workspace<L, B>,
    optimizer: &'a mut O,
    loss: &'a F,
    isa: Option<AnyIsa>,
}

impl<L: Layer, O, F, const B: usize> core::fmt::Debug for Trainer<'_, L, O, F, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trainer")
            .field("batch", &B)
            .finish_non_exhaustive()
    }
}

impl<'a, L: Layer, O: Optimizer<L::Params>, F, const B: usize> Trainer<'a, L, O, F, B> {
    /// Holds the parts of a training loop together (see [`Trainer`]).
    pub fn new(
        net: &'a L,
        params: &'a mut L::Params,
        grads: &'a mut L::Params,
        workspace: &'a mut Workspace<L, B>,
        optimizer: &'a mut O,
        loss: &'a F,
    ) -> Self {
        Trainer {
            net,
            params,
            grads,
            workspace,
            optimizer,
            loss,
            isa: None,
        }
    }

    /// Runs every later call on the instruction set `isa` (a token such as
    /// [`Scalar`](crate::kernels::Scalar), or [`Backend::isa`](crate::kernels::Backend::isa)'s),
    /// whatever the process-wide [`backend`](crate::kernels::backend) is. Without it, each
    /// call runs on the backend active when it starts (read once per call).
    ///
    /// ```
    /// use gradguard::kernels::Scalar;
    /// use gradguard::{Dense, Layer, MeanSquaredError, Sgd, Trainer, Workspace, Zeroed};
    /// type Net = Dense<1, 1>;
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// let mut ws = Workspace::<Net, 1>::ZEROED;
    /// let mut sgd = Sgd::new(0.5)?;
    /// let net = Net::default();
    /// let mut trainer = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &MeanSquaredError)
    ///     .with_isa(Scalar::new());
    /// trainer.step(&[[1.0]], &[[1.0]])?; // dW = db = 2·(0 − 1) = −2
    /// assert_eq!(trainer.params().weights, [[1.0]]);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    #[must_use]
    pub fn with_isa(mut self, isa: impl Into<AnyIsa>) -> Self {
        self.isa = Some(isa.into());
        self
    }

    /// The instruction set of this call.
    fn isa(&self) -> AnyIsa {
        self.isa.unwrap_or_else(active_isa)
    }

    /// One training step on a batch ([`crate::train_step`]); returns the mean loss.
    ///
    /// # Errors
    /// The loss's: an out-of-range label or target (only the forward cache has changed).
    pub fn step<const N: usize>(
        &mut self,
        x: &[L::Input; B],
        targets: &[F::Target; B],
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        self.step_observed(x, targets, &mut NoHealth)
    }

    /// [`Trainer::step`] that also records the gradient health of the backward pass in
    /// `observer` (a [`crate::health::HealthReport`], reset at the start of the step), before
    /// the optimiser updates the parameters.
    ///
    /// ```
    /// use gradguard::health::{HealthConfig, HealthReport};
    /// use gradguard::{init::Init, Dense, Layer, Relu, Seq, Sgd, SoftmaxCrossEntropy, Trainer, Workspace, Zeroed};
    /// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
    /// type Net = Seq![Dense<3, 4, Relu>, Dense<4, 2>];
    /// let net = Net::default();
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// net.init(&mut p, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(2));
    /// let mut ws = Workspace::<Net, 2>::ZEROED;
    /// let mut sgd = Sgd::new(0.1)?;
    /// let mut trainer = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy);
    /// let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
    /// trainer.step_observed(&[[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], &[0, 1], &mut report)?;
    /// assert_eq!(report.layers_from_output().len(), 2);
    /// assert_eq!(report.learning_rate, 0.1);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Trainer::step`].
    pub fn step_observed<H: GradientObserver, const N: usize>(
        &mut self,
        x: &[L::Input; B],
        targets: &[F::Target; B],
        observer: &mut H,
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        with_isa!(self.isa(), k => self.step_observed_on(k, x, targets, observer))
    }

    /// [`Trainer::step_observed`] compiled for `isa`: gradients, optimiser step, running
    /// statistics.
    fn step_observed_on<K: Isa, H: GradientObserver, const N: usize>(
        &mut self,
        isa: K,
        x: &[L::Input; B],
        targets: &[F::Target; B],
        observer: &mut H,
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        observer.begin_backward(self.optimizer.learning_rate());
        let value = self.gradients_on(isa, x, targets, observer)?;
        self.optimizer.step_on(isa, self.params, self.grads);
        self.net
            .update_running_statistics(self.params, &mut self.workspace.cache);
        Ok(value)
    }

    /// Training forward, loss and observed backward on a batch, gradients overwritten.
    fn gradients_on<K: Isa, H: GradientObserver, const N: usize>(
        &mut self,
        isa: K,
        x: &[L::Input; B],
        targets: &[F::Target; B],
        observer: &mut H,
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        forward_backward(
            isa,
            self.net,
            self.params,
            self.grads,
            self.workspace,
            self.loss,
            x,
            targets,
            Pass::WHOLE,
            observer,
        )
    }

    /// [`Trainer::step_observed`] that refuses a poisoned update and can clip gradients: the
    /// guard of mixed-precision loss scalers and of every training loop that must not lose a
    /// model to one bad batch.
    ///
    /// After the backward pass (observed by `observer`), if the loss or any gradient is NaN
    /// or ±∞ it returns [`StepOutcome::Skipped`] and leaves the parameters (batch norms'
    /// running statistics included) and the optimiser's state exactly as they were; count
    /// the skips to notice a data or divergence problem. Otherwise it applies `guard`'s
    /// clipping and the optimiser step. Costs the gradients' statistics ([`TensorStats`]:
    /// two reads of every gradient, for the norm and the finiteness) and, when clipping, one
    /// more pass that rescales them, on top of [`Trainer::step`]; nothing when not used.
    ///
    /// ```
    /// use gradguard::health::NoHealth;
    /// use gradguard::{Dense, Layer, MeanSquaredError, Sgd, StepGuard, StepOutcome, Trainer, Workspace, Zeroed};
    /// type Net = Dense<1, 1>;
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// let mut ws = Workspace::<Net, 1>::ZEROED;
    /// let mut sgd = Sgd::new(0.1)?;
    /// let net = Net::default();
    /// let mut trainer = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &MeanSquaredError);
    /// let guard = StepGuard::SKIP_NON_FINITE.with_max_norm(1.0)?;
    /// let bad = trainer.step_guarded(&[[f32::NAN]], &[[1.0]], &guard, &mut NoHealth)?;
    /// assert!(!bad.applied());
    /// assert_eq!(trainer.params().weights, [[0.0]]); // untouched
    /// let good = trainer.step_guarded(&[[3.0]], &[[1.0]], &guard, &mut NoHealth)?;
    /// // ‖(dW, db)‖ = ‖(-6, -2)‖ > 1: clipped to norm 1 before the step.
    /// assert!(matches!(good, StepOutcome::Applied { clipped: true, .. }));
    /// assert!((trainer.params().weights[0][0] - 0.1 * 6.0 / 40f32.sqrt()).abs() < 1e-6);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Trainer::step`]; a non-finite loss or gradient is not an error but
    /// [`StepOutcome::Skipped`].
    pub fn step_guarded<H: GradientObserver, const N: usize>(
        &mut self,
        x: &[L::Input; B],
        targets: &[F::Target; B],
        guard: &StepGuard,
        observer: &mut H,
    ) -> Result<StepOutcome, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        with_isa!(self.isa(), k => self.step_guarded_on(k, x, targets, guard, observer))
    }

    /// [`Trainer::step_guarded`] compiled for `isa`.
    fn step_guarded_on<K: Isa, H: GradientObserver, const N: usize>(
        &mut self,
        isa: K,
        x: &[L::Input; B],
        targets: &[F::Target; B],
        guard: &StepGuard,
        observer: &mut H,
    ) -> Result<StepOutcome, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        observer.begin_backward(self.optimizer.learning_rate());
        let value = self.gradients_on(isa, x, targets, observer)?;
        let grads = &mut *self.grads;
        let mut clipped = false;
        if let Some(limit) = guard.max_value() {
            for i in (0..L::Params::TENSORS).filter(|&i| is_trainable::<L::Params>(i)) {
                for g in grads.tensor_mut(i) {
                    // NaN compares false and stays, to be counted below.
                    let c = if *g > limit {
                        limit
                    } else if *g < -limit {
                        -limit
                    } else {
                        *g
                    };
                    clipped |= c != *g;
                    *g = c;
                }
            }
        }
        let mut stats = TensorStats::EMPTY;
        for i in (0..L::Params::TENSORS).filter(|&i| is_trainable::<L::Params>(i)) {
            stats.add_slice_on(isa, grads.tensor(i));
        }
        let non_finite_gradients = stats.counts.non_finite();
        if !value.is_finite() || non_finite_gradients > 0 {
            return Ok(StepOutcome::Skipped {
                loss: value,
                non_finite_gradients,
            });
        }
        let gradient_norm = stats.l2_norm();
        if let Some(limit) = guard.max_norm() {
            if gradient_norm > limit {
                // g·(limit/‖g‖) as (g·2^-E)·(limit/(‖g‖·2^-E)): finite even where ‖g‖ is not.
                let (unscale, factor) = stats.rescale_to_norm(limit);
                for i in (0..L::Params::TENSORS).filter(|&i| is_trainable::<L::Params>(i)) {
                    for g in grads.tensor_mut(i) {
                        *g = *g * unscale * factor;
                    }
                }
                clipped = true;
            }
        }
        self.optimizer.step_on(isa, self.params, grads);
        self.net
            .update_running_statistics(self.params, &mut self.workspace.cache);
        Ok(StepOutcome::Applied {
            loss: value,
            gradient_norm,
            clipped,
        })
    }

    /// One epoch over `samples` samples in the order of `order` (indices below `samples`;
    /// shuffle it between epochs with [`crate::init::shuffle`]): batches of `B` taken in
    /// order, `sample(i)` giving sample `i`'s input and target. Returns the mean of the
    /// batches' losses.
    ///
    /// When `B` does not divide the number of samples, the last batch is filled up with the
    /// first samples of `order` (wrapping around), so every step sees a full batch and
    /// every sample is seen at least once per epoch; a few are seen twice.
    ///
    /// ```
    /// use gradguard::{Dense, Layer, MeanSquaredError, Sgd, Trainer, Workspace, Zeroed};
    /// type Net = Dense<1, 1>;
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// let mut ws = Workspace::<Net, 4>::ZEROED;
    /// let mut sgd = Sgd::new(0.1)?;
    /// let net = Net::default();
    /// let mut trainer = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &MeanSquaredError);
    /// // y = 2x on 10 points with batches of 4: three steps, the last one wraps around.
    /// let order: Vec<usize> = (0..10).collect();
    /// for _ in 0..200 {
    ///     trainer.epoch(&order, |i| ([i as f32 / 10.0], [0.2 * i as f32]))?;
    /// }
    /// assert!((trainer.params().weights[0][0] - 2.0).abs() < 1e-2);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Trainer::step`] (the epoch stops at the first error).
    pub fn epoch<const N: usize>(
        &mut self,
        order: &[usize],
        mut sample: impl FnMut(usize) -> (L::Input, F::Target),
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        let (mut total, mut steps) = (0.0f32, 0usize);
        for first in (0..order.len()).step_by(B.max(1)) {
            let pairs: [(L::Input, F::Target); B] = core::array::from_fn(|k| {
                // Past the end: the first samples of `order` again (wrapping around).
                let at = (first + k) % order.len();
                sample(order.get(at).copied().unwrap_or(0))
            });
            total += self.step(&pairs.map(|p| p.0), &pairs.map(|p| p.1))?;
            steps += 1;
        }
        if steps == 0 {
            return Ok(0.0);
        }
        Ok(total / steps as f32)
    }

    /// The mean loss on a batch in inference ([`Layer::forward`]: batch norms use their
    /// running statistics), without changing the parameters or the gradients.
    ///
    /// # Errors
    /// The loss's: an out-of-range label or target.
    pub fn evaluate<const N: usize>(
        &mut self,
        x: &[L::Input; B],
        targets: &[F::Target; B],
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        with_isa!(self.isa(), k => {
            let cache = &mut self.workspace.cache;
            self.net.forward_on(k, Phase::Inference, self.params, x, cache);
            let grad = &mut self.workspace.output_grad;
            self.loss.loss_and_gradient_on(k, L::output(cache), targets, grad)
        })
    }

    /// The network's output for one sample (inference). It runs one forward pass of the
    /// whole batch `B` in the workspace (the sample in row 0, zeros elsewhere), so it
    /// costs a batch; for many single predictions keep an `L::Cache<1>` and call
    /// [`Layer::forward`] on it (what a firmware's inference loop does).
    #[must_use]
    pub fn predict(&mut self, x: &L::Input) -> L::Output {
        let mut batch = [L::Input::ZEROED; B];
        if let Some(first) = batch.first_mut() {
            *first = *x;
        }
        self.forward(&batch);
        L::output(&self.workspace.cache)
            .first()
            .copied()
            .unwrap_or(L::Output::ZEROED)
    }

    /// The gradients of the mean loss on a batch ([`crate::compute_gradients`]: training
    /// forward, loss, backward) without an optimiser step; returns the loss.
    ///
    /// # Errors
    /// As for [`Trainer::step`].
    pub fn gradients<const N: usize>(
        &mut self,
        x: &[L::Input; B],
        targets: &[F::Target; B],
    ) -> Result<f32, Error>
    where
        L: Layer<Output = [f32; N]>,
        F: Loss<N>,
    {
        with_isa!(self.isa(), k => self.gradients_on(k, x, targets, &mut NoHealth))
    }

    /// The share of `order`'s samples whose largest output is their label (`sample(i)`
    /// gives sample `i`'s input and label), in inference ([`Layer::forward`]), in batches
    /// of `B` (the last one padded with the first samples, which are not counted twice).
    /// 0 for an empty `order`.
    ///
    /// ```
    /// use gradguard::{Dense, DenseParams, Layer, SoftmaxCrossEntropy, Sgd, Trainer, Workspace, Zeroed};
    /// type Net = Dense<1, 2>;
    /// // Output 0 is x, output 1 is -x: class 0 for positive x.
    /// let mut p = DenseParams { weights: [[1.0], [-1.0]], bias: [0.0; 2] };
    /// let mut g = <Net as Layer>::Params::ZEROED;
    /// let mut ws = Workspace::<Net, 4>::ZEROED;
    /// let mut sgd = Sgd::new(0.1)?;
    /// let net = Net::default();
    /// let mut trainer = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy);
    /// let data = [(1.0, 0), (2.0, 0), (-1.0, 1), (3.0, 1), (-2.0, 1)];
    /// let order: Vec<usize> = (0..5).collect();
    /// assert_eq!(trainer.accuracy(&order, |i| ([data[i].0], data[i].1)), 0.8);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    pub fn accuracy<const N: usize>(
        &mut self,
        order: &[usize],
        mut sample: impl FnMut(usize) -> (L::Input, usize),
    ) -> f32
    where
        L: Layer<Output = [f32; N]>,
    {
        let mut correct = 0usize;
        for first in (0..order.len()).step_by(B.max(1)) {
            let pairs: [(L::Input, usize); B] = core::array::from_fn(|k| {
                let at = (first + k) % order.len();
                sample(order.get(at).copied().unwrap_or(0))
            });
            self.forward(&pairs.map(|p| p.0));
            let real = (order.len() - first).min(B);
            let outputs = L::output(&self.workspace.cache).iter().take(real);
            correct += outputs
                .zip(pairs.iter())
                .filter(|(out, (_, label))| crate::train::argmax(out.as_slice()) == *label)
                .count();
        }
        correct as f32 / order.len().max(1) as f32
    }

    /// Inference on a batch into the workspace's cache.
    fn forward(&mut self, x: &[L::Input; B]) {
        let (isa, cache) = (self.isa(), &mut self.workspace.cache);
        with_isa!(isa, k => self.net.forward_on(k, Phase::Inference, self.params, x, cache));
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &L::Params {
        self.params
    }

    /// The gradients of the last step.
    #[must_use]
    pub fn grads(&self) -> &L::Params {
        self.grads
    }

    /// The optimiser (for a learning-rate schedule: [`crate::LearningRate`]).
    pub fn optimizer(&mut self) -> &mut O {
        self.optimizer
    }
}
