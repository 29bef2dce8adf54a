//! [`Trainer`]: the network, its parameters, gradients, workspace, optimiser and loss held
//! together, so a training loop calls `step(&x, &y)` instead of passing eight arguments.

use crate::error::Error;
use crate::health::{GradientObserver, NoHealth};
use crate::layer::Layer;
use crate::loss::Loss;
use crate::optim::Optimizer;
use crate::train::{
    compute_gradients, train_step_guarded, train_step_observed, StepGuard, StepOutcome, Workspace,
};

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
        }
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

    /// [`Trainer::step`] that records the gradient health in `observer`
    /// ([`crate::train_step_observed`]).
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
        train_step_observed(
            self.net,
            self.params,
            self.grads,
            self.workspace,
            self.optimizer,
            self.loss,
            x,
            targets,
            observer,
        )
    }

    /// [`Trainer::step`] that skips a poisoned update and can clip gradients
    /// ([`crate::train_step_guarded`]).
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
        train_step_guarded(
            self.net,
            self.params,
            self.grads,
            self.workspace,
            self.optimizer,
            self.loss,
            x,
            targets,
            guard,
            observer,
        )
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
        self.net.forward(self.params, x, &mut self.workspace.cache);
        self.loss.loss_and_gradient(
            L::output(&self.workspace.cache),
            targets,
            &mut self.workspace.output_grad,
        )
    }

    /// The network's output for one sample (inference). It runs one forward pass of the
    /// whole batch `B` in the workspace (the sample in row 0, zeros elsewhere), so it
    /// costs a batch; for many single predictions keep an `L::Cache<1>` and call
    /// [`Layer::forward`] on it (what a firmware's inference loop does).
    #[must_use]
    pub fn predict(&mut self, x: &L::Input) -> L::Output {
        let mut batch = [<L::Input as crate::storage::Zeroed>::ZEROED; B];
        if let Some(first) = batch.first_mut() {
            *first = *x;
        }
        self.net
            .forward(self.params, &batch, &mut self.workspace.cache);
        L::output(&self.workspace.cache)
            .first()
            .copied()
            .unwrap_or(<L::Output as crate::storage::Zeroed>::ZEROED)
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
        compute_gradients(
            self.net,
            self.params,
            self.grads,
            self.workspace,
            self.loss,
            x,
            targets,
            &mut NoHealth,
        )
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
            self.net
                .forward(self.params, &pairs.map(|p| p.0), &mut self.workspace.cache);
            let real = (order.len() - first).min(B);
            let outputs = L::output(&self.workspace.cache).iter().take(real);
            correct += outputs
                .zip(pairs.iter())
                .filter(|(out, (_, label))| crate::train::argmax(out.as_slice()) == *label)
                .count();
        }
        correct as f32 / order.len().max(1) as f32
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
