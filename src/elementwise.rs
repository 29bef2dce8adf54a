//! The elementwise functions the kernels apply lane by lane: below both the kernels and the
//! activations, so the kernels can apply an activation without depending on the module
//! that defines them. Re-exported as `gradguard::Elementwise`.

use crate::lanes::Lanes;

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
    /// True only for the identity, f(x) = x: the kernels then compute the forward pass as
    /// a copy (on a Cortex-M a block copy, eight words per `vldmia`/`vstmia`, where a
    /// compiled loop calls `memcpy`). Leave the default (`false`) for any other function.
    ///
    /// ```
    /// use gradguard::{Elementwise, Identity, Relu};
    /// assert!(Identity::IS_IDENTITY && !Relu::IS_IDENTITY);
    /// ```
    const IS_IDENTITY: bool = false;
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
