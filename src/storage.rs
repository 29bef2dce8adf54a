//! Plain storage: zeroed constructors usable in `static`s, and a uniform view of parameter
//! tensors for optimisers.

/// A type with an all-zero value available at compile time.
///
/// Every parameter, gradient, cache, workspace and optimiser type of gradguard implements it,
/// so a whole training state can be declared as a `static` (it then lives in `.bss` and never
/// passes through the stack) and reset in place. A local `let` or `Box::new(T::ZEROED)` builds
/// the value on the stack first (in debug builds at least): fine for kilobytes, not for the
/// megabytes of a large layer, which belong in a `static`.
///
/// ```
/// use gradguard::{Dense, Layer, Zeroed};
/// type Net = Dense<4, 2>;
/// static PARAMS: <Net as Layer>::Params = <Net as Layer>::Params::ZEROED;
/// assert!(PARAMS.weights.iter().flatten().all(|&w| w == 0.0));
/// ```
///
/// Two spellings, for two different things: storage (parameters, gradients, caches,
/// workspaces, optimiser state) is `ZEROED`, every bit zero, so a `static` of it lands in
/// `.bss`; a record of what was observed (`health::TensorStats`, `health::LayerHealth`,
/// `health::ClassCounts`) starts `EMPTY`, nothing observed yet, which is not all zero (the
/// smallest magnitude seen starts at +∞). A health report starts as
/// `health::HealthReport::new(config)`, a `const fn`.
pub trait Zeroed: Sized {
    /// The value with every f32 equal to +0.0.
    const ZEROED: Self;

    /// Overwrites `self` with [`Zeroed::ZEROED`] in place.
    ///
    /// ```
    /// use gradguard::Zeroed;
    /// let mut a = [1.0_f32; 3];
    /// a.set_zero();
    /// assert_eq!(a, [0.0; 3]);
    /// ```
    #[inline]
    fn set_zero(&mut self) {
        *self = Self::ZEROED;
    }
}

impl Zeroed for f32 {
    const ZEROED: Self = 0.0;
}

impl<T: Zeroed + Copy, const N: usize> Zeroed for [T; N] {
    const ZEROED: Self = [T::ZEROED; N];
}

/// What a parameter tensor is, for optimisers and reports.
///
/// ```
/// use gradguard::{Dense, Layer, Parameters, TensorKind};
/// let info = <<Dense<3, 2> as Layer>::Params as Parameters>::tensor_info(1);
/// assert_eq!(info.map(|i| i.kind), Some(TensorKind::Bias));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A weight matrix, stored row-major (one row per output unit).
    Weight,
    /// A bias vector (also a batch norm's shift β).
    Bias,
    /// A per-feature scale vector (a batch norm's γ).
    Scale,
    /// A batch norm's running mean: state saved with the parameters, not trained.
    RunningMean,
    /// A batch norm's running (unbiased) variance: state saved with the parameters, not
    /// trained.
    RunningVariance,
}

impl TensorKind {
    /// True for tensors an optimiser updates from their gradients (weights, biases,
    /// scales); false for state such as running statistics, which optimisers, gradient
    /// clipping and gradient norms skip.
    ///
    /// ```
    /// use gradguard::TensorKind;
    /// assert!(TensorKind::Scale.is_trainable());
    /// assert!(!TensorKind::RunningMean.is_trainable());
    /// ```
    #[must_use]
    pub const fn is_trainable(self) -> bool {
        matches!(
            self,
            TensorKind::Weight | TensorKind::Bias | TensorKind::Scale
        )
    }
}

/// True if tensor `i` of `P` exists and is trainable ([`TensorKind::is_trainable`]).
#[inline]
pub(crate) fn is_trainable<P: Parameters>(i: usize) -> bool {
    P::tensor_info(i).is_some_and(|t| t.kind.is_trainable())
}

/// Where a parameter tensor sits in a network.
///
/// ```
/// use gradguard::{Dense, Layer, Parameters, Relu, Seq};
/// type Net = Seq![Dense<3, 4, Relu>, Dense<4, 2>];
/// let info = <<Net as Layer>::Params as Parameters>::tensor_info(2).unwrap();
/// assert_eq!((info.layer, info.rows, info.cols), (1, 2, 4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Index of the parametrised layer, counting from the input (0) to the output.
    pub layer: usize,
    /// Weight, bias, scale or running statistic.
    pub kind: TensorKind,
    /// Rows (output units) of the tensor; a vector (bias, scale, running statistic) has
    /// `rows` = its length and `cols` = 1.
    pub rows: usize,
    /// Columns (input units).
    pub cols: usize,
}

/// A set of parameter tensors (weights and biases), also used for their gradients and for
/// optimiser state of the same shape.
///
/// Tensors are numbered `0..TENSORS`; an optimiser walks the same number in parameters,
/// gradients and its own state, so no pointer casts or allocation are needed.
///
/// ```
/// use gradguard::{Dense, Layer, Parameters, Zeroed};
/// type P = <Dense<3, 2> as Layer>::Params;
/// let mut p = P::ZEROED;
/// p.tensor_mut(1)[0] = 1.5;
/// assert_eq!(P::TENSORS, 2);
/// assert_eq!(p.bias[0], 1.5);
/// assert_eq!(p.tensor(7).len(), 0); // out of range: empty, no panic
/// ```
pub trait Parameters: Zeroed {
    /// Number of tensors.
    const TENSORS: usize;
    /// Number of parametrised layers these tensors belong to.
    const LAYERS: usize;
    /// Number of scalar parameters in all tensors together (the sum of `rows · cols`).
    ///
    /// ```
    /// use gradguard::{Dense, Layer, Parameters};
    /// assert_eq!(<<Dense<64, 32> as Layer>::Params as Parameters>::SCALARS, 64 * 32 + 32);
    /// ```
    const SCALARS: usize;
    /// Tensor `i` as a flat slice (empty if `i >= TENSORS`).
    fn tensor(&self, i: usize) -> &[f32];
    /// Tensor `i` as a flat mutable slice (empty if `i >= TENSORS`).
    fn tensor_mut(&mut self, i: usize) -> &mut [f32];
    /// Layer index, kind and shape of tensor `i` (`None` if `i >= TENSORS`).
    fn tensor_info(i: usize) -> Option<TensorInfo>;
}

/// No parameters (activation layers).
///
/// ```
/// use gradguard::{NoParameters, Parameters};
/// assert_eq!(NoParameters::TENSORS, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoParameters;

impl Zeroed for NoParameters {
    const ZEROED: Self = NoParameters;
}

impl Parameters for NoParameters {
    const TENSORS: usize = 0;
    const LAYERS: usize = 0;
    const SCALARS: usize = 0;
    fn tensor(&self, _i: usize) -> &[f32] {
        &[]
    }
    fn tensor_mut(&mut self, _i: usize) -> &mut [f32] {
        &mut []
    }
    fn tensor_info(_i: usize) -> Option<TensorInfo> {
        None
    }
}

/// Two things side by side: the parameters (and gradients, which have the same type) of a
/// [`crate::Chain`]: `first` for its first layer, `second` for the rest.
///
/// ```
/// use gradguard::{Pair, Zeroed};
/// let p: Pair<[f32; 2], [f32; 3]> = Pair::ZEROED;
/// assert_eq!(p.second, [0.0; 3]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pair<A, B> {
    /// The part belonging to the first (input-side) layer.
    pub first: A,
    /// The part belonging to the second (output-side) layer.
    pub second: B,
}

impl<A: Zeroed, B: Zeroed> Zeroed for Pair<A, B> {
    const ZEROED: Self = Pair {
        first: A::ZEROED,
        second: B::ZEROED,
    };
}

impl<A: Parameters, B: Parameters> Parameters for Pair<A, B> {
    const TENSORS: usize = A::TENSORS + B::TENSORS;
    const LAYERS: usize = A::LAYERS + B::LAYERS;
    const SCALARS: usize = A::SCALARS + B::SCALARS;
    fn tensor(&self, i: usize) -> &[f32] {
        if i < A::TENSORS {
            self.first.tensor(i)
        } else {
            self.second.tensor(i - A::TENSORS)
        }
    }
    fn tensor_mut(&mut self, i: usize) -> &mut [f32] {
        if i < A::TENSORS {
            self.first.tensor_mut(i)
        } else {
            self.second.tensor_mut(i - A::TENSORS)
        }
    }
    fn tensor_info(i: usize) -> Option<TensorInfo> {
        if i < A::TENSORS {
            A::tensor_info(i)
        } else {
            B::tensor_info(i - A::TENSORS).map(|t| TensorInfo {
                layer: t.layer + A::LAYERS,
                ..t
            })
        }
    }
}
