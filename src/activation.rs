//! Activation functions with derivatives computed from the pre-activation.
//!
//! Every activation is a small `Copy` value (most are zero-sized) implementing
//! [`Activation`] (row forms: forward `a = f(z)`, backward `dz = dy ⊙ f'(z)` or, for
//! softmax, the Jacobian-vector product). The elementwise ones also implement
//! [`Elementwise`], which gives the scalar `f` and `f'`.
//!
//! Conventions shared by all of them:
//! * the derivative at a kink is the left one: relu'(0) = 0, leaky'(0) = α, elu'(0) = α;
//! * f'(NaN) = NaN, so a NaN pre-activation keeps poisoning the backward pass instead of
//!   being silently turned into a 0 or 1 gradient;
//! * no activation ever panics.
//!
//! ```
//! use gradguard::{Activation, Elementwise, Sigmoid};
//! let z = [-1.0_f32, 0.0, 40.0];
//! let (mut a, mut dz) = ([0.0; 3], [0.0; 3]);
//! Sigmoid.forward(&z, &mut a);
//! Sigmoid.backward(&z, &a, &[1.0; 3], &mut dz);
//! assert_eq!(dz[1], 0.25);
//! assert!(dz[2] > 0.0 && dz[2] == Sigmoid.derivative(40.0)); // 4.2e-18, not a false zero
//! ```

pub use crate::elementwise::{Elementwise, Formula};
use crate::health::LayerHealth;
use crate::kernels::{self, with_isa, Isa};
use crate::lanes::Lanes;
use crate::math;

/// A row-wise activation: what a [`crate::Dense`] layer applies to its pre-activations.
///
/// ```
/// use gradguard::{Activation, Softmax};
/// let mut a = [0.0; 2];
/// Softmax.forward(&[0.0, 0.0], &mut a);
/// assert_eq!(a, [0.5, 0.5]);
/// ```
pub trait Activation: Copy {
    /// Short name for reports (`"sigmoid"`, `"relu"`, …).
    const NAME: &'static str;

    /// `a = f(z)` over a block of rows of `units` values each (`[rows][units]` flattened;
    /// `min(len)` elements), with the kernels of `isa`. Elementwise activations treat the
    /// block as one array, so a batch of narrow rows still fills whole vectors.
    fn forward_on<K: Isa>(&self, isa: K, z: &[f32], a: &mut [f32], units: usize);

    /// `dz = ∂L/∂z` over a block of rows of `units` values, given the pre-activation `z`,
    /// the output `a` and `dy = ∂L/∂a`, with the kernels of `isa`.
    fn backward_on<K: Isa>(
        &self,
        isa: K,
        z: &[f32],
        a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
    );

    /// `a = f(z)` over one row, on the active backend.
    #[inline]
    fn forward(&self, z: &[f32], a: &mut [f32]) {
        with_isa!(k => self.forward_on(k, z, a, z.len()));
    }

    /// `dz = ∂L/∂z` over one row given its pre-activation `z`, its output `a` and
    /// `dy = ∂L/∂a`, on the active backend.
    #[inline]
    fn backward(&self, z: &[f32], a: &[f32], dy: &[f32], dz: &mut [f32]) {
        with_isa!(k => self.backward_on(k, z, a, dy, dz, z.len()));
    }

    /// Backward over a whole batch (`dz`, `z`, `a`, `dy` are `[rows][units]` flattened) that
    /// also records the health of dz in `health`: its statistics and, for elementwise
    /// activations, the underflow attribution of every product `dy·f'(z)` and the dead and
    /// saturated units. The values are those of [`Activation::backward`], bit for bit. The
    /// default (row-wise activations such as softmax) records the statistics only.
    ///
    /// ```
    /// use gradguard::{health::LayerHealth, Activation, Relu};
    /// let mut h = LayerHealth::EMPTY;
    /// let mut dz = [0.0; 4];
    /// let z = [-1.0, 2.0, -3.0, 4.0]; // two samples of two units: unit 0 is dead
    /// Relu.backward_observed(&z, &z, &[1.0; 4], &mut dz, 2, &mut h);
    /// assert_eq!((dz, h.dead_units, h.pre_activation_structural_zeros), ([0.0, 1.0, 0.0, 1.0], 1, 2));
    /// ```
    #[inline]
    fn backward_observed(
        &self,
        z: &[f32],
        a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
        health: &mut LayerHealth,
    ) {
        with_isa!(k => self.backward_observed_on(k, z, a, dy, dz, units, health));
    }

    /// [`Activation::backward_observed`] with the kernels of `isa`.
    #[allow(clippy::too_many_arguments)]
    fn backward_observed_on<K: Isa>(
        &self,
        isa: K,
        z: &[f32],
        a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
        health: &mut LayerHealth,
    ) {
        self.backward_on(isa, z, a, dy, dz, units);
        let n = z.len().min(a.len()).min(dy.len()).min(dz.len());
        let rows = n.checked_div(units).unwrap_or(0);
        health
            .pre_activation_grad
            .add_slice_on(isa, dz.get(..rows * units).unwrap_or(&[]));
    }
}

impl<T: Elementwise> Activation for T {
    const NAME: &'static str = <T as Elementwise>::NAME;

    #[inline]
    fn forward_on<K: Isa>(&self, isa: K, z: &[f32], a: &mut [f32], _units: usize) {
        isa.activation_forward(self, z, a);
    }

    #[inline]
    fn backward_on<K: Isa>(
        &self,
        isa: K,
        z: &[f32],
        _a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        _units: usize,
    ) {
        isa.activation_backward(self, z, dy, dz);
    }

    #[inline]
    fn backward_observed_on<K: Isa>(
        &self,
        isa: K,
        z: &[f32],
        _a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
        health: &mut LayerHealth,
    ) {
        crate::health::elementwise_backward(isa, self, z, dy, dz, units, health);
    }
}

/// NaN for NaN, otherwise `v`: how every derivative keeps NaN alive.
#[inline(always)]
fn nan_or<R: Lanes>(x: R, v: R) -> R {
    R::select(x.is_nan(), x, v)
}

/// The scalar `value`/`derivative` of a built-in activation: its `*_lanes` formula at f32.
macro_rules! scalar_from_lanes {
    () => {
        #[inline(always)]
        fn value(&self, x: f32) -> f32 {
            self.value_lanes(x)
        }
        #[inline(always)]
        fn derivative(&self, x: f32) -> f32 {
            self.derivative_lanes(x)
        }
    };
}

/// f(x) = x, f'(x) = 1.
///
/// ```
/// use gradguard::{Elementwise, Identity};
/// assert_eq!((Identity.value(3.0), Identity.derivative(-7.0)), (3.0, 1.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl Elementwise for Identity {
    const NAME: &'static str = "identity";
    const FORMULA: Formula = Formula::Identity;
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        x
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        nan_or(x, R::splat(1.0))
    }
    fn derivative_never_zero(&self) -> bool {
        true
    }
    fn derivative_is_step(&self) -> bool {
        true
    }
}

/// The logistic function σ; see [`math::sigmoid`] and [`math::sigmoid_derivative`] for the
/// error bounds. σ' ∈ [0, 1/4], normal for |x| ≤ 87.
///
/// ```
/// use gradguard::{Elementwise, Sigmoid};
/// assert_eq!(Sigmoid.derivative(0.0), 0.25);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigmoid;

impl Elementwise for Sigmoid {
    const NAME: &'static str = "sigmoid";
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        math::sigmoid_lanes(x)
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        math::sigmoid_derivative_lanes(x)
    }
    #[inline(always)]
    fn value_and_derivative_lanes<R: Lanes>(&self, x: R) -> (R, R) {
        math::sigmoid_and_derivative_lanes(x)
    }
    fn derivative_never_zero(&self) -> bool {
        true
    }
    fn saturates(&self) -> bool {
        true
    }
}

/// Hyperbolic tangent; tanh' = 4·σ'(2x) ∈ [0, 1], normal for |x| ≤ 44.36 and nonzero wherever
/// the true value rounds to nonzero. See [`math::tanh`] and [`math::tanh_derivative`].
///
/// ```
/// use gradguard::{Elementwise, Tanh};
/// assert_eq!(Tanh.derivative(0.0), 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tanh;

impl Elementwise for Tanh {
    const NAME: &'static str = "tanh";
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        math::tanh_lanes(x)
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        math::tanh_derivative_lanes(x)
    }
    fn derivative_never_zero(&self) -> bool {
        true
    }
    fn saturates(&self) -> bool {
        true
    }
}

/// Rectified linear unit: max(x, 0); relu' ∈ {0, 1} with relu'(0) = 0.
///
/// ```
/// use gradguard::{Elementwise, Relu};
/// assert_eq!((Relu.value(-2.0), Relu.derivative(0.0), Relu.derivative(1e-45)), (0.0, 0.0, 1.0));
/// assert!(Relu.value(f32::NAN).is_nan());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relu;

impl Elementwise for Relu {
    const NAME: &'static str = "relu";
    const FORMULA: Formula = Formula::Relu;
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        // `x <= 0` is false for NaN, which passes through.
        R::select(x.le(R::splat(0.0)), R::splat(0.0), x)
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        let step = R::select(x.gt(R::splat(0.0)), R::splat(1.0), R::splat(0.0));
        nan_or(x, step)
    }
    fn can_die(&self) -> bool {
        true
    }
    fn derivative_is_step(&self) -> bool {
        true
    }
}

/// Leaky ReLU: x for x > 0, α·x otherwise; leaky' ∈ {α, 1} with leaky'(0) = α.
///
/// ```
/// use gradguard::{Elementwise, LeakyRelu};
/// let f = LeakyRelu::new(0.01);
/// assert_eq!((f.value(-100.0), f.derivative(-3.0), f.derivative(2.0)), (-1.0, 0.01, 1.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyRelu {
    /// The slope α for x ≤ 0 (commonly 0.01, or 0.2–0.3).
    pub alpha: f32,
}

impl LeakyRelu {
    /// A leaky ReLU with slope `alpha` below zero.
    ///
    /// ```
    /// assert_eq!(gradguard::LeakyRelu::new(0.2).alpha, 0.2);
    /// ```
    #[must_use]
    pub const fn new(alpha: f32) -> Self {
        LeakyRelu { alpha }
    }
}

impl Default for LeakyRelu {
    /// α = 0.01.
    fn default() -> Self {
        LeakyRelu::new(0.01)
    }
}

impl Elementwise for LeakyRelu {
    const NAME: &'static str = "leaky_relu";
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        R::select(x.gt(R::splat(0.0)), x, R::splat(self.alpha) * x)
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        let slope = R::select(x.gt(R::splat(0.0)), R::splat(1.0), R::splat(self.alpha));
        nan_or(x, slope)
    }
    fn derivative_never_zero(&self) -> bool {
        self.alpha != 0.0
    }
    fn can_die(&self) -> bool {
        self.alpha == 0.0
    }
}

/// Exponential linear unit: x for x > 0, α·(e^x − 1) otherwise (via [`math::expm1`], no
/// cancellation near 0); elu'(x) = α·e^x for x ≤ 0.
///
/// ```
/// use gradguard::{Elu, Elementwise};
/// let f = Elu::new(1.0);
/// assert_eq!((f.value(2.0), f.derivative(0.0)), (2.0, 1.0));
/// assert_eq!(f.value(-1e-20), -1e-20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Elu {
    /// The scale α of the negative part.
    pub alpha: f32,
}

impl Elu {
    /// An ELU with scale `alpha`.
    ///
    /// ```
    /// assert_eq!(gradguard::Elu::new(0.5).alpha, 0.5);
    /// ```
    #[must_use]
    pub const fn new(alpha: f32) -> Self {
        Elu { alpha }
    }
}

impl Default for Elu {
    /// α = 1.
    fn default() -> Self {
        Elu::new(1.0)
    }
}

impl Elementwise for Elu {
    const NAME: &'static str = "elu";
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        let negative = R::splat(self.alpha) * math::expm1_lanes(x);
        R::select(x.gt(R::splat(0.0)), x, negative)
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        let negative = R::splat(self.alpha) * math::exp_lanes(x);
        R::select(x.gt(R::splat(0.0)), R::splat(1.0), negative)
    }
    fn derivative_never_zero(&self) -> bool {
        self.alpha != 0.0
    }
}

/// Softsign: x / (1 + |x|); softsign'(x) = 1/(1+|x|)², computed as r·r with r = 1/(1+|x|)
/// so it never overflows to a false zero (it is subnormal, correctly, for |x| > 9.2e18).
///
/// ```
/// use gradguard::{Elementwise, Softsign};
/// assert_eq!((Softsign.value(1.0), Softsign.derivative(1.0)), (0.5, 0.25));
/// assert!(Softsign.derivative(2e19) > 0.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Softsign;

impl Elementwise for Softsign {
    const NAME: &'static str = "softsign";
    scalar_from_lanes!();
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        let a = x.abs();
        // For |x| = ∞ the quotient is NaN; the limit is ±1.
        let limit = R::splat(1.0).or_sign_of(x);
        R::select(
            a.ge(R::splat(f32::INFINITY)),
            limit,
            x / (R::splat(1.0) + a),
        )
    }
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        let r = R::splat(1.0) / (R::splat(1.0) + x.abs());
        r * r
    }
    fn derivative_never_zero(&self) -> bool {
        true
    }
}

/// Row softmax, max-subtracted (see [`kernels::softmax_row`]); its backward is the
/// Jacobian-vector product `a ⊙ (dy − ⟨dy, a⟩)`.
///
/// For classification use a [`crate::Dense`] with [`Identity`] output and
/// [`crate::SoftmaxCrossEntropy`], which fuses both and is more accurate.
///
/// ```
/// use gradguard::{Activation, Softmax};
/// let mut a = [0.0; 3];
/// Softmax.forward(&[1.0, 2.0, 3.0], &mut a);
/// assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Softmax;

impl Activation for Softmax {
    const NAME: &'static str = "softmax";
    #[inline]
    fn forward_on<K: Isa>(&self, isa: K, z: &[f32], a: &mut [f32], units: usize) {
        for (z, a) in z.chunks(units.max(1)).zip(a.chunks_mut(units.max(1))) {
            kernels::softmax_row_on(isa, z, a);
        }
    }
    #[inline]
    fn backward_on<K: Isa>(
        &self,
        _isa: K,
        _z: &[f32],
        a: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        units: usize,
    ) {
        let rows = a.chunks(units.max(1)).zip(dy.chunks(units.max(1)));
        for ((a, dy), dz) in rows.zip(dz.chunks_mut(units.max(1))) {
            kernels::softmax_backward_row(a, dy, dz);
        }
    }
}
