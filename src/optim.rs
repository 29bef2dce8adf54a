//! Optimisers. Each walks the tensors of a [`Parameters`] set; state of the same shape is
//! kept inside the optimiser, so a `static` optimiser holds all of it.
//!
//! Constructors validate their hyper-parameters and return [`Error`] instead of panicking.
//!
//! ```
//! use gradguard::{Dense, Layer, Optimizer, Sgd, Zeroed};
//! type P = <Dense<2, 1> as Layer>::Params;
//! let mut params = P::ZEROED;
//! let mut grads = P::ZEROED;
//! grads.bias = [2.0];
//! let mut sgd = Sgd::new(0.5).unwrap();
//! sgd.step(&mut params, &grads);
//! assert_eq!(params.bias, [-1.0]);
//! ```

use crate::error::Error;
use crate::kernels::{self, Isa};
use crate::storage::{is_trainable, Parameters, Zeroed};

/// The learning rate of an optimiser: read and changed (for schedules) without naming the
/// parameter type the optimiser is used with.
///
/// ```
/// use gradguard::{LearningRate, Sgd};
/// let mut sgd = Sgd::new(0.1)?;
/// sgd.set_learning_rate(0.05)?;
/// assert_eq!(sgd.learning_rate(), 0.05);
/// assert!(sgd.set_learning_rate(-1.0).is_err());
/// # Ok::<(), gradguard::Error>(())
/// ```
pub trait LearningRate {
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (for schedules); rejects non-finite or non-positive values.
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless it is finite and positive (the rate is then
    /// unchanged).
    fn set_learning_rate(&mut self, learning_rate: f32) -> Result<(), Error>;
}

/// Updates parameters from their gradients.
///
/// ```
/// use gradguard::{Dense, Layer, Optimizer, Sgd, Zeroed};
/// type P = <Dense<1, 1> as Layer>::Params;
/// let (mut p, mut g) = (P::ZEROED, P::ZEROED);
/// g.bias = [1.0];
/// Sgd::new(0.1)?.step(&mut p, &g);
/// assert_eq!(p.bias, [-0.1]);
/// # Ok::<(), gradguard::Error>(())
/// ```
pub trait Optimizer<P: Parameters>: LearningRate {
    /// Applies one update to `params` using `grads`, on the active backend (chosen once
    /// for all tensors of the step).
    #[inline]
    fn step(&mut self, params: &mut P, grads: &P) {
        kernels::with_isa!(isa => self.step_on(isa, params, grads));
    }

    /// [`Optimizer::step`] with the kernels of `isa` (what the training steps call, inside
    /// the pass they compiled for one instruction set). Implement this.
    ///
    /// ```
    /// use gradguard::{kernels::Scalar, Dense, Layer, Optimizer, Sgd, Zeroed};
    /// type P = <Dense<1, 1> as Layer>::Params;
    /// let (mut p, mut g) = (P::ZEROED, P::ZEROED);
    /// g.weights = [[2.0]];
    /// Sgd::new(0.5)?.step_on(Scalar::new(), &mut p, &g);
    /// assert_eq!(p.weights, [[-1.0]]);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    fn step_on<K: Isa>(&mut self, isa: K, params: &mut P, grads: &P);
}

fn check_learning_rate(lr: f32) -> Result<f32, Error> {
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(Error::InvalidLearningRate(lr))
    }
}

fn check_range(name: &'static str, v: f32, low: f32, high_exclusive: f32) -> Result<f32, Error> {
    if v >= low && v < high_exclusive {
        Ok(v)
    } else {
        Err(Error::InvalidHyperparameter(name, v))
    }
}

/// Plain stochastic gradient descent, `w −= lr·(g + λ·w)`; no state.
///
/// Accepted: learning rate finite and > 0, weight decay λ finite and ≥ 0 (NaN, ±∞ and
/// negative values are errors). From finite parameters and gradients one step (of `Sgd` or
/// [`Momentum`]) never produces NaN; it produces ±∞ only where the exact update exceeds
/// `f32::MAX`, as IEEE arithmetic overflows (the update costs one multiply-add per weight, so
/// it does not saturate like [`Adam`]). Clip the gradient or use the guarded step
/// ([`crate::Trainer::step_guarded`]) when gradients can be that large.
///
/// ```
/// use gradguard::Sgd;
/// let sgd = Sgd::new(0.1).unwrap().with_weight_decay(1e-4).unwrap();
/// assert_eq!(sgd.weight_decay(), 1e-4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    learning_rate: f32,
    weight_decay: f32,
}

impl Sgd {
    /// SGD with the given learning rate (finite, > 0) and no weight decay.
    ///
    /// ```
    /// assert!(gradguard::Sgd::new(0.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless the learning rate is finite and positive.
    pub fn new(learning_rate: f32) -> Result<Self, Error> {
        Ok(Sgd {
            learning_rate: check_learning_rate(learning_rate)?,
            weight_decay: 0.0,
        })
    }

    /// Adds L2 weight decay λ (finite, ≥ 0) to the gradient of every tensor.
    ///
    /// ```
    /// assert!(gradguard::Sgd::new(0.1).unwrap().with_weight_decay(-1.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"weight_decay"`) if it is negative or not finite.
    pub fn with_weight_decay(self, weight_decay: f32) -> Result<Self, Error> {
        Ok(Sgd {
            weight_decay: check_range("weight_decay", weight_decay, 0.0, f32::INFINITY)?,
            ..self
        })
    }

    /// The weight decay λ.
    ///
    /// ```
    /// assert_eq!(gradguard::Sgd::new(0.1).unwrap().weight_decay(), 0.0);
    /// ```
    #[must_use]
    pub fn weight_decay(&self) -> f32 {
        self.weight_decay
    }
}

impl<P: Parameters> Optimizer<P> for Sgd {
    fn step_on<K: Isa>(&mut self, isa: K, params: &mut P, grads: &P) {
        for i in (0..P::TENSORS).filter(|&i| is_trainable::<P>(i)) {
            let (w, g) = (params.tensor_mut(i), grads.tensor(i));
            isa.sgd_update(w, g, self.learning_rate, self.weight_decay);
        }
    }
}

impl LearningRate for Sgd {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }
    fn set_learning_rate(&mut self, learning_rate: f32) -> Result<(), Error> {
        self.learning_rate = check_learning_rate(learning_rate)?;
        Ok(())
    }
}

/// SGD with momentum μ (PyTorch convention `v = μv + g`, `w −= lr·v`), holding the velocity.
///
/// ```
/// use gradguard::{Dense, Layer, Momentum, Optimizer, Sgd, Zeroed};
/// type P = <Dense<1, 1> as Layer>::Params;
/// let mut opt = Momentum::<P>::new(Sgd::new(1.0).unwrap(), 0.5).unwrap();
/// let (mut p, mut g) = (P::ZEROED, P::ZEROED);
/// g.bias = [1.0];
/// opt.step(&mut p, &g);
/// opt.step(&mut p, &g);
/// assert_eq!(p.bias, [-2.5]); // steps of 1 and 1.5
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum<P> {
    sgd: Sgd,
    momentum: f32,
    velocity: P,
}

/// Unconfigured and all zero, so a `static` of it lives in `.bss` (no flash image, never on
/// the stack): learning rate 0, and [`Optimizer::step`] changes nothing until
/// [`Momentum::configure`] sets the hyper-parameters in place.
///
/// ```
/// use gradguard::{Dense, Layer, Momentum, Optimizer, Sgd, Zeroed};
/// type P = <Dense<1024, 1024> as Layer>::Params;
/// static mut OPTIMIZER: Momentum<P> = Momentum::ZEROED; // 4 MiB of velocity in .bss
/// # let mut small = Momentum::<<Dense<2, 1> as Layer>::Params>::ZEROED;
/// # small.configure(Sgd::new(0.1)?, 0.9)?;
/// # assert_eq!(gradguard::LearningRate::learning_rate(&small), 0.1);
/// # Ok::<(), gradguard::Error>(())
/// ```
impl<P: Parameters> Zeroed for Momentum<P> {
    const ZEROED: Self = Momentum {
        sgd: Sgd {
            learning_rate: 0.0,
            weight_decay: 0.0,
        },
        momentum: 0.0,
        velocity: P::ZEROED,
    };
}

impl<P: Parameters> Momentum<P> {
    /// Momentum SGD from a plain [`Sgd`] configuration and μ ∈ [0, 1); velocity starts at 0.
    /// Builds the whole state as a value: for a large network use [`Momentum::ZEROED`] in a
    /// `static` (or any zeroed memory) and [`Momentum::configure`].
    ///
    /// ```
    /// use gradguard::{Momentum, NoParameters, Sgd};
    /// assert!(Momentum::<NoParameters>::new(Sgd::new(0.1).unwrap(), 1.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] (`"momentum"`) unless 0 ≤ momentum < 1.
    pub fn new(sgd: Sgd, momentum: f32) -> Result<Self, Error> {
        let mut optimizer = Self::ZEROED;
        optimizer.configure(sgd, momentum)?;
        Ok(optimizer)
    }

    /// Sets the hyper-parameters and zeroes the velocity, in place (nothing passes through
    /// the stack). On error nothing changes.
    ///
    /// ```
    /// use gradguard::{Momentum, NoParameters, Sgd, Zeroed};
    /// let mut opt = Momentum::<NoParameters>::ZEROED;
    /// opt.configure(Sgd::new(0.01)?, 0.9)?;
    /// assert!(opt.configure(Sgd::new(0.01)?, f32::NAN).is_err());
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Momentum::new`]; nothing changes then.
    pub fn configure(&mut self, sgd: Sgd, momentum: f32) -> Result<(), Error> {
        self.momentum = check_range("momentum", momentum, 0.0, 1.0)?;
        self.sgd = sgd;
        self.velocity.set_zero();
        Ok(())
    }

    /// Resets the velocity to zero in place.
    ///
    /// ```
    /// use gradguard::{Momentum, NoParameters, Sgd};
    /// Momentum::<NoParameters>::new(Sgd::new(0.1).unwrap(), 0.9).unwrap().reset();
    /// ```
    pub fn reset(&mut self) {
        self.velocity.set_zero();
    }
}

impl<P: Parameters> Optimizer<P> for Momentum<P> {
    fn step_on<K: Isa>(&mut self, isa: K, params: &mut P, grads: &P) {
        if self.sgd.learning_rate == 0.0 {
            return; // unconfigured (ZEROED)
        }
        for i in (0..P::TENSORS).filter(|&i| is_trainable::<P>(i)) {
            let (w, g, v) = (
                params.tensor_mut(i),
                grads.tensor(i),
                self.velocity.tensor_mut(i),
            );
            isa.sgd_momentum_update(
                w,
                g,
                v,
                self.sgd.learning_rate,
                self.momentum,
                self.sgd.weight_decay,
            );
        }
    }
}

impl<P: Parameters> LearningRate for Momentum<P> {
    fn learning_rate(&self) -> f32 {
        self.sgd.learning_rate
    }
    fn set_learning_rate(&mut self, learning_rate: f32) -> Result<(), Error> {
        self.sgd.set_learning_rate(learning_rate)
    }
}

/// Adam (Kingma & Ba, 2015) with optional L2 weight decay; holds both moment estimates.
///
/// ```
/// use gradguard::{Adam, Dense, Layer, Optimizer, Zeroed};
/// type P = <Dense<1, 1> as Layer>::Params;
/// let mut adam = Adam::<P>::new(0.01).unwrap();
/// let (mut p, mut g) = (P::ZEROED, P::ZEROED);
/// g.weights = [[3.0]];
/// adam.step(&mut p, &g);
/// assert!((p.weights[0][0] + 0.01).abs() < 1e-6); // the first step moves by lr
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam<P> {
    learning_rate: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// β1^t and β2^t after t steps.
    beta1_power: f32,
    beta2_power: f32,
    m: P,
    v: P,
}

impl<P: Parameters> Adam<P> {
    /// The smallest accepted ε, 2^-114 ≈ 4.8e-35: with β2 ≤ 1 − 2^-24 (the largest f32 below
    /// 1) the bias correction √(1−β2^t) is at least 2^-12, so ε·√(1−β2^t) ≥ 2^-126 is normal.
    ///
    /// ```
    /// assert_eq!(gradguard::Adam::<gradguard::NoParameters>::MIN_EPSILON, 2f32.powi(-114));
    /// ```
    pub const MIN_EPSILON: f32 = f32::from_bits((127 - 114) << 23);

    /// Adam with β1 = 0.9, β2 = 0.999, ε = 1e-8, no weight decay. Builds the whole state as
    /// a value: for a large network use [`Adam::ZEROED`] in a `static` (or any zeroed memory)
    /// and [`Adam::configure`].
    ///
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless the learning rate is finite and positive.
    /// ```
    /// assert!(gradguard::Adam::<gradguard::NoParameters>::new(f32::INFINITY).is_err());
    /// ```
    pub fn new(learning_rate: f32) -> Result<Self, Error> {
        Self::with_hyperparameters(learning_rate, 0.9, 0.999, 1e-8, 0.0)
    }

    /// Adam with every hyper-parameter given: learning rate finite and > 0, β1, β2 ∈ [0, 1),
    /// ε finite and ≥ [`Adam::MIN_EPSILON`], weight decay finite and ≥ 0.
    ///
    /// Within these ranges no step can turn finite parameters and gradients into NaN or ±∞:
    /// the bias-corrected ε_t = ε·√(1−β2^t) ≥ ε·2^-12 stays a normal f32 (no 0/0 where
    /// m = v = 0), and the update saturates at ±`f32::MAX` instead of overflowing (see
    /// [`crate::kernels::adam_update`]).
    ///
    /// ```
    /// use gradguard::{Adam, Error, NoParameters};
    /// let e = Adam::<NoParameters>::with_hyperparameters(0.1, 0.9, 1.5, 1e-8, 0.0).unwrap_err();
    /// assert_eq!(e, Error::InvalidHyperparameter("beta2", 1.5));
    /// let e = Adam::<NoParameters>::with_hyperparameters(0.1, 0.9, 0.999, 1e-45, 0.0).unwrap_err();
    /// assert_eq!(e, Error::InvalidHyperparameter("epsilon", 1e-45));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] as for [`Adam::new`]; [`Error::InvalidHyperparameter`] naming
    /// the first of β1, β2 outside [0, 1), ε below the smallest it accepts, or a negative weight
    /// decay.
    pub fn with_hyperparameters(
        learning_rate: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    ) -> Result<Self, Error> {
        let mut adam = Self::ZEROED;
        adam.configure(learning_rate, beta1, beta2, epsilon, weight_decay)?;
        Ok(adam)
    }

    /// Sets every hyper-parameter (ranges as for [`Adam::with_hyperparameters`]) and forgets
    /// the moment estimates, in place (nothing passes through the stack). On error nothing
    /// changes.
    ///
    /// ```
    /// use gradguard::{Adam, LearningRate, NoParameters, Zeroed};
    /// let mut adam = Adam::<NoParameters>::ZEROED;
    /// adam.configure(1e-3, 0.9, 0.999, 1e-8, 0.0)?;
    /// assert_eq!(adam.learning_rate(), 1e-3);
    /// assert!(adam.configure(1e-3, 0.9, 0.999, 0.0, 0.0).is_err());
    /// assert_eq!(adam.learning_rate(), 1e-3);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Adam::with_hyperparameters`].
    pub fn configure(
        &mut self,
        learning_rate: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    ) -> Result<(), Error> {
        let learning_rate = check_learning_rate(learning_rate)?;
        let beta1 = check_range("beta1", beta1, 0.0, 1.0)?;
        let beta2 = check_range("beta2", beta2, 0.0, 1.0)?;
        let epsilon = check_range("epsilon", epsilon, Self::MIN_EPSILON, f32::INFINITY)?;
        let weight_decay = check_range("weight_decay", weight_decay, 0.0, f32::INFINITY)?;
        (self.learning_rate, self.beta1, self.beta2) = (learning_rate, beta1, beta2);
        (self.epsilon, self.weight_decay) = (epsilon, weight_decay);
        self.reset();
        Ok(())
    }

    /// Forgets the moment estimates and the step count.
    ///
    /// ```
    /// gradguard::Adam::<gradguard::NoParameters>::new(0.1).unwrap().reset();
    /// ```
    pub fn reset(&mut self) {
        self.m.set_zero();
        self.v.set_zero();
        self.beta1_power = 1.0;
        self.beta2_power = 1.0;
    }
}

/// Unconfigured and all zero, so a `static` of it lives in `.bss` (no flash image, never on
/// the stack): learning rate 0, and [`Optimizer::step`] changes nothing until
/// [`Adam::configure`] sets the hyper-parameters in place.
///
/// ```
/// use gradguard::{Adam, Dense, Layer, Zeroed};
/// type P = <Dense<1024, 1024> as Layer>::Params;
/// static mut OPTIMIZER: Adam<P> = Adam::ZEROED; // 8 MiB of moments in .bss
/// ```
impl<P: Parameters> Zeroed for Adam<P> {
    const ZEROED: Self = Adam {
        learning_rate: 0.0,
        beta1: 0.0,
        beta2: 0.0,
        epsilon: 0.0,
        weight_decay: 0.0,
        beta1_power: 0.0,
        beta2_power: 0.0,
        m: P::ZEROED,
        v: P::ZEROED,
    };
}

impl<P: Parameters> Optimizer<P> for Adam<P> {
    fn step_on<K: Isa>(&mut self, isa: K, params: &mut P, grads: &P) {
        if self.learning_rate == 0.0 {
            return; // unconfigured (ZEROED)
        }
        self.beta1_power *= self.beta1;
        self.beta2_power *= self.beta2;
        let (bias1, bias2) = (1.0 - self.beta1_power, 1.0 - self.beta2_power);
        for i in (0..P::TENSORS).filter(|&i| is_trainable::<P>(i)) {
            isa.adam_update(
                params.tensor_mut(i),
                grads.tensor(i),
                self.m.tensor_mut(i),
                self.v.tensor_mut(i),
                self.learning_rate,
                self.beta1,
                self.beta2,
                self.epsilon,
                self.weight_decay,
                bias1,
                bias2,
            );
        }
    }
}

impl<P: Parameters> LearningRate for Adam<P> {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }
    fn set_learning_rate(&mut self, learning_rate: f32) -> Result<(), Error> {
        self.learning_rate = check_learning_rate(learning_rate)?;
        Ok(())
    }
}

/// A learning rate read from an image: valid, or 0 for an unconfigured (zeroed) optimiser.
fn check_stored_learning_rate(lr: f32) -> Result<(), Error> {
    if lr == 0.0 {
        Ok(())
    } else {
        check_learning_rate(lr).map(|_| ())
    }
}

/// The image of a [`Momentum`] optimiser: learning rate, weight decay and momentum, then the
/// velocity tensors. Loading refuses hyper-parameters [`Momentum::configure`] would refuse
/// (a learning rate of 0, the unconfigured state, is accepted).
///
/// ```
/// use gradguard::image::{self, NonFinite, Persistent};
/// use gradguard::{Dense, Layer, Momentum, Sgd, Zeroed};
/// type P = <Dense<2, 2> as Layer>::Params;
/// let mut opt = Momentum::<P>::ZEROED;
/// opt.configure(Sgd::new(0.1)?, 0.9)?;
/// let mut buf = [0u8; <Momentum<P> as Persistent>::IMAGE_BYTES];
/// image::save(&opt, &mut buf)?;
/// let mut resumed = Momentum::<P>::ZEROED;
/// image::load(&buf, &mut resumed, NonFinite::Reject)?;
/// assert_eq!(gradguard::LearningRate::learning_rate(&resumed), 0.1);
/// # Ok::<(), gradguard::Error>(())
/// ```
impl<P: Parameters> crate::image::Persistent for Momentum<P> {
    const CONTENT: crate::image::Content = crate::image::Content::Momentum;
    const SLICES: usize = 3 + P::TENSORS;
    const VALUES: usize = 3 + P::SCALARS;
    const LEADING_SCALARS: usize = 3;
    const PARAMETER_TENSORS: usize = P::TENSORS;
    fn signature() -> u32 {
        crate::image::shape_signature::<P>()
    }
    fn slice(&self, i: usize) -> &[f32] {
        match i {
            0 => core::slice::from_ref(&self.sgd.learning_rate),
            1 => core::slice::from_ref(&self.sgd.weight_decay),
            2 => core::slice::from_ref(&self.momentum),
            _ => self.velocity.tensor(i.saturating_sub(3)),
        }
    }
    fn slice_mut(&mut self, i: usize) -> &mut [f32] {
        match i {
            0 => core::slice::from_mut(&mut self.sgd.learning_rate),
            1 => core::slice::from_mut(&mut self.sgd.weight_decay),
            2 => core::slice::from_mut(&mut self.momentum),
            _ => self.velocity.tensor_mut(i.saturating_sub(3)),
        }
    }
    fn check_scalars(scalars: &[f32]) -> Result<(), Error> {
        let &[learning_rate, weight_decay, momentum] = scalars else {
            return Err(Error::InvalidHyperparameter(
                "image scalars",
                scalars.len() as f32,
            ));
        };
        check_stored_learning_rate(learning_rate)?;
        check_range("weight_decay", weight_decay, 0.0, f32::INFINITY)?;
        check_range("momentum", momentum, 0.0, 1.0)?;
        Ok(())
    }
}

/// The image of an [`Adam`] optimiser: learning rate, β1, β2, ε, weight decay, β1^t and
/// β2^t, then the first-moment tensors m and the second-moment tensors v. Loading refuses
/// hyper-parameters [`Adam::configure`] would refuse (a learning rate of 0, the
/// unconfigured state, is accepted with any ε), β powers outside [0, 1], and negative or
/// non-finite second moments whatever the [`NonFinite`](crate::image::NonFinite) option.
///
/// ```
/// use gradguard::image::{self, NonFinite, Persistent};
/// use gradguard::{Adam, Dense, Layer, Zeroed};
/// type P = <Dense<2, 2> as Layer>::Params;
/// let mut opt = Adam::<P>::ZEROED;
/// opt.configure(1e-3, 0.9, 0.999, 1e-8, 0.0)?;
/// let mut buf = [0u8; <Adam<P> as Persistent>::IMAGE_BYTES];
/// image::save(&opt, &mut buf)?;
/// let mut resumed = Adam::<P>::ZEROED;
/// image::load(&buf, &mut resumed, NonFinite::Reject)?;
/// assert_eq!(gradguard::LearningRate::learning_rate(&resumed), 1e-3);
/// # Ok::<(), gradguard::Error>(())
/// ```
impl<P: Parameters> crate::image::Persistent for Adam<P> {
    const CONTENT: crate::image::Content = crate::image::Content::Adam;
    const SLICES: usize = 7 + 2 * P::TENSORS;
    const VALUES: usize = 7 + 2 * P::SCALARS;
    const LEADING_SCALARS: usize = 7;
    const PARAMETER_TENSORS: usize = P::TENSORS;
    fn signature() -> u32 {
        crate::image::shape_signature::<P>()
    }
    fn slice(&self, i: usize) -> &[f32] {
        match i {
            0 => core::slice::from_ref(&self.learning_rate),
            1 => core::slice::from_ref(&self.beta1),
            2 => core::slice::from_ref(&self.beta2),
            3 => core::slice::from_ref(&self.epsilon),
            4 => core::slice::from_ref(&self.weight_decay),
            5 => core::slice::from_ref(&self.beta1_power),
            6 => core::slice::from_ref(&self.beta2_power),
            _ => {
                let t = i.saturating_sub(7);
                if t < P::TENSORS {
                    self.m.tensor(t)
                } else {
                    self.v.tensor(t.saturating_sub(P::TENSORS))
                }
            }
        }
    }
    fn slice_mut(&mut self, i: usize) -> &mut [f32] {
        match i {
            0 => core::slice::from_mut(&mut self.learning_rate),
            1 => core::slice::from_mut(&mut self.beta1),
            2 => core::slice::from_mut(&mut self.beta2),
            3 => core::slice::from_mut(&mut self.epsilon),
            4 => core::slice::from_mut(&mut self.weight_decay),
            5 => core::slice::from_mut(&mut self.beta1_power),
            6 => core::slice::from_mut(&mut self.beta2_power),
            _ => {
                let t = i.saturating_sub(7);
                if t < P::TENSORS {
                    self.m.tensor_mut(t)
                } else {
                    self.v.tensor_mut(t.saturating_sub(P::TENSORS))
                }
            }
        }
    }
    fn check_scalars(scalars: &[f32]) -> Result<(), Error> {
        let &[learning_rate, beta1, beta2, epsilon, weight_decay, beta1_power, beta2_power] =
            scalars
        else {
            return Err(Error::InvalidHyperparameter(
                "image scalars",
                scalars.len() as f32,
            ));
        };
        check_stored_learning_rate(learning_rate)?;
        if learning_rate != 0.0 {
            check_range("beta1", beta1, 0.0, 1.0)?;
            check_range("beta2", beta2, 0.0, 1.0)?;
            check_range("epsilon", epsilon, Self::MIN_EPSILON, f32::INFINITY)?;
        }
        check_range("weight_decay", weight_decay, 0.0, f32::INFINITY)?;
        check_range(
            "beta1_power",
            beta1_power,
            0.0,
            f32::from_bits(1.0f32.to_bits() + 1),
        )?;
        check_range(
            "beta2_power",
            beta2_power,
            0.0,
            f32::from_bits(1.0f32.to_bits() + 1),
        )?;
        Ok(())
    }
    fn value_allowed(index: usize, v: f32) -> bool {
        // The second moments v (the last P::SCALARS values) are never negative.
        index < 7 + P::SCALARS || v >= 0.0 || v.is_nan()
    }
}
