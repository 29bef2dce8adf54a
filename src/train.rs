//! One training step, evaluation helpers and the memory a network needs.

use crate::error::Error;
use crate::health::{GradientObserver, NoHealth};
use crate::kernels::GradMode;
use crate::layer::Layer;
use crate::loss::Loss;
use crate::optim::Optimizer;
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
/// ```
/// use gradguard::{training_bytes, Dense, Relu, Seq};
/// type Net = Seq![Dense<64, 32, Relu>, Dense<32, 10>];
/// const BYTES: usize = training_bytes::<Net, 32>();
/// let params = (64 * 32 + 32) + (32 * 10 + 10);
/// let cache = 3 * 32 * (32 + 10) + 32 * 32; // z, a, dz per layer + boundary gradient
/// assert_eq!(BYTES, 4 * (2 * params + cache + 32 * 10));
/// ```
pub const fn training_bytes<L: Layer, const B: usize>() -> usize {
    2 * core::mem::size_of::<L::Params>() + core::mem::size_of::<Workspace<L, B>>()
}

/// Forward, loss, backward and one optimiser update on a batch; returns the mean loss.
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
    train_step_observed(
        net,
        params,
        grads,
        workspace,
        optimizer,
        loss,
        x,
        targets,
        &mut NoHealth,
    )
}

/// [`train_step`] that also records the gradient health of the backward pass in `observer`
/// (a [`crate::health::HealthReport`], reset at the start of the step), before the
/// optimiser updates the parameters.
///
/// ```
/// use gradguard::health::{HealthConfig, HealthReport};
/// use gradguard::{init::Init, train_step_observed, Dense, Layer, Relu, Seq, Sgd, SoftmaxCrossEntropy, Workspace, Zeroed};
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// type Net = Seq![Dense<3, 4, Relu>, Dense<4, 2>];
/// let net = Net::default();
/// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
/// net.init(&mut p, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(2));
/// let mut ws = Workspace::<Net, 2>::ZEROED;
/// let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
/// train_step_observed(&net, &mut p, &mut g, &mut ws, &mut Sgd::new(0.1)?, &SoftmaxCrossEntropy,
///                     &[[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], &[0, 1], &mut report)?;
/// assert_eq!(report.layers_from_output().len(), 2);
/// assert_eq!(report.learning_rate, 0.1);
/// # Ok::<(), gradguard::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn train_step_observed<L, O, F, H, const N: usize, const B: usize>(
    net: &L,
    params: &mut L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, B>,
    optimizer: &mut O,
    loss: &F,
    x: &[L::Input; B],
    targets: &[F::Target; B],
    observer: &mut H,
) -> Result<f32, Error>
where
    L: Layer<Output = [f32; N]>,
    O: Optimizer<L::Params>,
    F: Loss<N>,
    H: GradientObserver,
{
    observer.begin_backward(optimizer.learning_rate());
    let value = compute_gradients(net, params, grads, workspace, loss, x, targets, observer)?;
    optimizer.step(params, grads);
    Ok(value)
}

/// Forward, loss and backward on a batch without an optimiser step: overwrites `grads`
/// with the gradient of the mean loss and returns the loss. Observed by `observer` (pass
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
    net.forward(params, x, &mut workspace.cache);
    let value = loss.loss_and_gradient(
        L::output(&workspace.cache),
        targets,
        &mut workspace.output_grad,
    )?;
    net.backward_observed(
        params,
        x,
        &mut workspace.cache,
        &workspace.output_grad,
        grads,
        None,
        GradMode::Overwrite,
        observer,
    );
    Ok(value)
}

/// Index of the largest element (the first one on ties; NaN elements are never chosen
/// unless all are NaN, then 0).
///
/// ```
/// assert_eq!(gradguard::argmax(&[0.1, 0.7, 0.2]), 1);
/// assert_eq!(gradguard::argmax(&[f32::NAN, 1.0]), 1);
/// ```
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
