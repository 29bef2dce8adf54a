//! The elementwise functions the kernels apply lane by lane: below both the kernels and the
//! activations, so the kernels can apply an activation without depending on the module
//! that defines them. Re-exported as `gradguard::Elementwise`.

use crate::lanes::Lanes;

/// A built-in formula an [`Elementwise`] function may declare (see
/// [`Elementwise::FORMULA`]).
///
/// ```
/// use gradguard::{Elementwise, Formula, Relu};
/// assert_eq!(Relu::FORMULA, Formula::Relu);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Formula {
    /// f(x) = x, f'(x) = 1 (NaN for a NaN x).
    Identity,
    /// f(x) = x for x > 0 (and NaN), +0 otherwise; f'(x) = 1 for x > 0, 0 otherwise, NaN
    /// for a NaN x: [`Relu`](crate::Relu).
    Relu,
    /// Any other function: the kernels evaluate its `*_lanes` formulas.
    Other,
}

/// An activation applied independently to every element.
///
/// ```
/// use gradguard::{Elementwise, LeakyRelu};
/// let leaky = LeakyRelu::new(0.2);
/// assert_eq!((leaky.value(-1.0), leaky.derivative(0.0)), (-0.2, 0.2));
/// ```
pub trait Elementwise: Copy {
    /// Short name for reports.
    const NAME: &'static str;
    /// Which built-in formula this function is, so that the kernels may run a hand-written
    /// loop for it with the same bits (the identity's forward as a block copy; ReLU's
    /// compare-and-select in VFP code on a Cortex-M, where compiled code spends two
    /// instructions moving each comparison's flags). Leave the default,
    /// [`Formula::Other`], for your own functions: a `Formula` promises exactly that
    /// formula, NaN behaviour included.
    ///
    /// ```
    /// use gradguard::{Elementwise, Formula, Identity, Relu, Sigmoid};
    /// assert_eq!((Identity::FORMULA, Relu::FORMULA), (Formula::Identity, Formula::Relu));
    /// assert_eq!(Sigmoid::FORMULA, Formula::Other);
    /// ```
    const FORMULA: Formula = Formula::Other;
    /// f(x).
    fn value(&self, x: f32) -> f32;
    /// f'(x), from the pre-activation x.
    fn derivative(&self, x: f32) -> f32;

    /// f on any [`Lanes`] type: what the SIMD kernels call. The default applies
    /// [`Elementwise::value`] lane by lane; the built-in activations write their formula
    /// once here and `value` is this at `R = f32`, so every backend gives the same bits.
    ///
    /// ```
    /// use gradguard::{Elementwise, Relu};
    /// assert_eq!(Relu.value_lanes(-1.0_f32), Relu.value(-1.0));
    /// ```
    #[inline(always)]
    fn value_lanes<R: Lanes>(&self, x: R) -> R {
        x.map_lanes(|v| self.value(v))
    }

    /// f' on any [`Lanes`] type (see [`Elementwise::value_lanes`]).
    ///
    /// ```
    /// use gradguard::{Elementwise, Tanh};
    /// assert_eq!(Tanh.derivative_lanes(0.0_f32), 1.0);
    /// ```
    #[inline(always)]
    fn derivative_lanes<R: Lanes>(&self, x: R) -> R {
        x.map_lanes(|v| self.derivative(v))
    }

    /// (f, f') on any [`Lanes`] type in one pass: what
    /// [`activation_forward_and_derivative`](crate::kernels::activation_forward_and_derivative)
    /// calls. The default evaluates [`Elementwise::value_lanes`] and
    /// [`Elementwise::derivative_lanes`]; an activation whose two formulas share work (the
    /// sigmoid's exponential) overrides it, and must return the same bits as the two.
    ///
    /// ```
    /// use gradguard::{Elementwise, Sigmoid};
    /// let (v, d) = Sigmoid.value_and_derivative_lanes(2.0_f32);
    /// assert_eq!((v, d), (Sigmoid.value(2.0), Sigmoid.derivative(2.0)));
    /// ```
    #[inline(always)]
    fn value_and_derivative_lanes<R: Lanes>(&self, x: R) -> (R, R) {
        (self.value_lanes(x), self.derivative_lanes(x))
    }

    /// True if f' is never zero mathematically, so a computed 0 is an underflow (sigmoid,
    /// tanh, leaky ReLU with α ≠ 0).
    ///
    /// ```
    /// use gradguard::{Elementwise, LeakyRelu, Relu, Sigmoid};
    /// assert!(Sigmoid.derivative_never_zero() && LeakyRelu::new(0.01).derivative_never_zero());
    /// assert!(!Relu.derivative_never_zero());
    /// ```
    fn derivative_never_zero(&self) -> bool {
        false
    }

    /// True if a unit can die: f' is exactly 0 on a whole half-line (ReLU).
    ///
    /// ```
    /// use gradguard::{Elementwise, LeakyRelu, Relu};
    /// assert!(Relu.can_die() && !LeakyRelu::new(0.01).can_die());
    /// ```
    fn can_die(&self) -> bool {
        false
    }

    /// True if f' tends to 0 at both ends, so units can saturate (sigmoid, tanh).
    ///
    /// ```
    /// use gradguard::{Elementwise, Relu, Tanh};
    /// assert!(Tanh.saturates() && !Relu.saturates());
    /// ```
    fn saturates(&self) -> bool {
        false
    }

    /// True if f' only takes the values 0 and 1 (ReLU, identity; NaN aside): then
    /// `dy·f'(z)` is exact, and a zero dz is always structural. The health tracking skips
    /// its underflow attribution for such activations.
    ///
    /// ```
    /// use gradguard::{Elementwise, Relu, Sigmoid};
    /// assert!(Relu.derivative_is_step() && !Sigmoid.derivative_is_step());
    /// ```
    fn derivative_is_step(&self) -> bool {
        false
    }
}
