//! Gradient health: underflowed, vanished, exploded and dead gradients, detected while
//! backward runs.
//!
//! * Values are classified by their **bits** ([`classify`]): zero, subnormal, normal,
//!   infinite, NaN. No FPU exception flag is read and no FPU control register is written.
//! * [`TensorStats`] keeps counts per class, max |g|, smallest nonzero |g|, mean |g| and an
//!   L2 norm accumulated with a power-of-two scale, so neither underflows nor overflows
//!   (1e-30 values give ≈ 1e-30·√n; 1e30 values do not give ∞).
//! * [`HealthReport`] is the observer passed to [`crate::Layer::backward_observed`] (or
//!   [`crate::Trainer::step_observed`]). Each [`crate::Dense`] layer fills one
//!   [`LayerHealth`] inside its backward kernels. The counting is fused into loops that
//!   already touch the values. With [`NoHealth`] (what [`crate::Layer::backward`] uses) all
//!   of it is compiled out.
//!
//! ```
//! use gradguard::health::{HealthConfig, HealthReport};
//! use gradguard::{init::Init, Dense, GradMode, Layer, Seq, Sigmoid, Zeroed};
//! use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
//!
//! type Net = Seq![Dense<4, 4, Sigmoid>, Dense<4, 1>];
//! let net = Net::default();
//! let mut p = <Net as Layer>::Params::ZEROED;
//! net.init(&mut p, Init::XavierNormal, &mut Xoshiro256PlusPlus::seed_from_u64(1));
//! p.first.bias = [-200.0; 4]; // every sigmoid unit saturated: σ'(z) ≈ 1e-87 → 0 in f32
//! let x = [[0.5; 4]];
//! let mut cache = <Net as Layer>::Cache::<1>::ZEROED;
//! net.forward(&p, &x, &mut cache);
//! let mut grads = <Net as Layer>::Params::ZEROED;
//! let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
//! net.backward_observed(&p, &x, &mut cache, &[[1.0]], &mut grads, None, GradMode::Overwrite, &mut report);
//! let flags = report.flags();
//! assert_eq!(flags.underflow, Some(0)); // layer 0's dz = dy·σ'(z) underflowed to zero
//! assert_eq!(flags.saturated, Some(0));
//! assert_eq!(report.layer(0).unwrap().pre_activation_became_zero, 4);
//! ```

use core::fmt;

use crate::kernels::Isa;
use crate::lanes::{exponent_bound, pow2_wide as pow2, scale_by_pow2};

mod track;
pub(crate) use track::{
    batch_norm_backward, dense_input_products, dense_parameters, elementwise_backward,
    BatchNormTerms,
};

/// The class of an f32, read from its bits.
///
/// ```
/// use gradguard::health::{classify, FloatClass};
/// assert_eq!(classify(-0.0), FloatClass::Zero);
/// assert_eq!(classify(1e-40), FloatClass::Subnormal);
/// assert_eq!(classify(f32::NEG_INFINITY), FloatClass::Infinite);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FloatClass {
    /// +0 or −0.
    Zero,
    /// Nonzero with a zero exponent field: below 2^-126 ≈ 1.18e-38 in magnitude.
    Subnormal,
    /// Finite, with a nonzero exponent field.
    Normal,
    /// ±∞.
    Infinite,
    /// Not a number.
    Nan,
}

/// Classifies `v` by its bit pattern alone.
///
/// ```
/// assert_eq!(gradguard::health::classify(f32::MIN_POSITIVE), gradguard::health::FloatClass::Normal);
/// ```
#[inline(always)]
#[must_use]
pub fn classify(v: f32) -> FloatClass {
    let bits = v.to_bits() & 0x7fff_ffff;
    let exponent = bits >> 23;
    let mantissa = bits & 0x007f_ffff;
    match (exponent, mantissa) {
        (0, 0) => FloatClass::Zero,
        (0, _) => FloatClass::Subnormal,
        (0xff, 0) => FloatClass::Infinite,
        (0xff, _) => FloatClass::Nan,
        _ => FloatClass::Normal,
    }
}

/// True if `v` is zero or subnormal (|v| < 2^-126), by its bits.
#[inline(always)]
pub(crate) fn is_zero_or_subnormal(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 == 0
}

/// True if sums taken at a scale fixed in advance over `n` values (`m`, see
/// [`crate::kernels::Moments`]) are as accurate as at the scale of their own maximum: Σ s²
/// finite (the terms are ≥ 0, so no square or partial sum overflowed; Σ|s| is then finite
/// too, every |s| < 2^64), and either 0 with no nonzero value or at least n·2^-125, so that
/// the squares that fell below 2^-126 (each off by at most 2^-149) move it by less than its
/// own rounding (2^-24 relative). Needs no maximum and no scale: sums of |v| itself (scale
/// 2^0, one multiply less per vector) pass it whenever they are accurate. (A norm taken
/// without the smallest magnitude reports 0 there, so a zero sum fails.)
pub(crate) fn sums_fit(m: &crate::kernels::Moments, n: usize) -> bool {
    let s = m.sum_squares;
    let floor = n as f32 * (2.0 * f32::MIN_POSITIVE);
    s.is_finite()
        && m.sum_abs.is_finite()
        && if s == 0.0 {
            m.magnitudes.min_nonzero_abs == f32::INFINITY
        } else {
            s >= floor
        }
}

/// How many values of each [`FloatClass`] a tensor holds.
///
/// ```
/// use gradguard::health::ClassCounts;
/// let c = ClassCounts { zero: 1, subnormal: 2, normal: 3, infinite: 0, nan: 1 };
/// assert_eq!((c.total(), c.non_finite()), (7, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassCounts {
    /// ±0.
    pub zero: u64,
    /// Subnormal.
    pub subnormal: u64,
    /// Normal.
    pub normal: u64,
    /// ±∞.
    pub infinite: u64,
    /// NaN.
    pub nan: u64,
}

impl ClassCounts {
    /// Nothing counted yet (every count zero). Records of what was observed spell their
    /// start value `EMPTY`, like [`TensorStats::EMPTY`] and [`LayerHealth::EMPTY`].
    pub const EMPTY: Self = ClassCounts {
        zero: 0,
        subnormal: 0,
        normal: 0,
        infinite: 0,
        nan: 0,
    };

    /// Number of values counted.
    ///
    /// ```
    /// assert_eq!(gradguard::health::ClassCounts::EMPTY.total(), 0);
    /// ```
    #[must_use]
    pub fn total(&self) -> u64 {
        self.zero
            .saturating_add(self.subnormal)
            .saturating_add(self.normal)
            .saturating_add(self.infinite)
            .saturating_add(self.nan)
    }

    /// Number of infinite and NaN values.
    ///
    /// ```
    /// assert_eq!(gradguard::health::ClassCounts::EMPTY.non_finite(), 0);
    /// ```
    #[must_use]
    pub fn non_finite(&self) -> u64 {
        self.infinite.saturating_add(self.nan)
    }
}

/// Statistics of a tensor, accumulated one value at a time without underflow or overflow.
///
/// Norm and mean are accumulated as Σ(|g|·2^-E) and Σ(|g|·2^-E)² with 2^E a power of two
/// above every |g| seen so far (the scale grows, and the sums are rescaled exactly, when a
/// larger value arrives). So scaling a tensor by 2^k scales norm, mean, max and min by
/// exactly 2^k while all values stay normal, and subnormal values still contribute.
/// Infinite and NaN values are counted but kept out of norm, mean, max and min.
///
/// ```
/// use gradguard::health::TensorStats;
/// let tiny = TensorStats::of(&[1e-30; 100]);
/// assert!((tiny.l2_norm() / 1e-29 - 1.0).abs() < 1e-5);
/// let huge = TensorStats::of(&[1e30; 100]);
/// assert!((huge.l2_norm() / 1e31 - 1.0).abs() < 1e-5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorStats {
    /// Values per class.
    pub counts: ClassCounts,
    /// Largest finite |g| (0 if none).
    pub max_abs: f32,
    /// Smallest nonzero finite |g| (+∞ if none).
    pub min_nonzero_abs: f32,
    /// E: every finite |g| seen is below 2^E.
    scale_exponent: i32,
    /// Σ |g|·2^-E.
    sum_abs_scaled: f32,
    /// Σ (|g|·2^-E)².
    sum_squares_scaled: f32,
}

impl Default for TensorStats {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl TensorStats {
    /// No values yet.
    pub const EMPTY: Self = TensorStats {
        counts: ClassCounts::EMPTY,
        max_abs: 0.0,
        min_nonzero_abs: f32::INFINITY,
        scale_exponent: -126,
        sum_abs_scaled: 0.0,
        sum_squares_scaled: 0.0,
    };

    /// Statistics of a whole slice.
    ///
    /// ```
    /// let s = gradguard::health::TensorStats::of(&[3.0, -4.0, 0.0, f32::NAN]);
    /// assert_eq!((s.l2_norm(), s.max_abs, s.min_nonzero_abs, s.counts.nan), (5.0, 4.0, 3.0, 1));
    /// ```
    #[must_use]
    pub fn of(values: &[f32]) -> Self {
        let mut s = Self::EMPTY;
        s.add_slice(values);
        s
    }

    /// Adds one value (the one-element case of [`TensorStats::add_slice`]).
    ///
    /// ```
    /// let mut s = gradguard::health::TensorStats::EMPTY;
    /// s.add(1e-40);
    /// assert_eq!(s.counts.subnormal, 1);
    /// ```
    #[inline]
    pub fn add(&mut self, v: f32) {
        self.add_slice(core::slice::from_ref(&v));
    }

    /// Adds every value of `values`.
    ///
    /// Two passes with SIMD kernels on the active backend: the first counts zeros and
    /// subnormals and finds the extremes (identical on every backend: counting and comparing
    /// do not round); the second sums |g|·2^-E and (|g|·2^-E)² with one power-of-two
    /// multiplier, in partial sums per lane, so norm and mean are deterministic for a
    /// backend, exactly scale-invariant under 2^k, and agree across backends within the
    /// rounding of a sum. A slice with an infinite or NaN value (seen as a non-finite sum)
    /// is counted again exactly by a slower pass.
    ///
    /// ```
    /// let mut s = gradguard::health::TensorStats::EMPTY;
    /// s.add_slice(&[3.0; 9]);  // norm 9
    /// s.add_slice(&[4.0; 16]); // norm 16, together √(81 + 256)
    /// assert!((s.l2_norm() - 337f32.sqrt()).abs() < 1e-5);
    /// ```
    #[inline]
    pub fn add_slice(&mut self, values: &[f32]) {
        crate::kernels::with_isa!(k => self.add_slice_on(k, values));
    }

    /// [`TensorStats::add_slice`] with the kernels of `isa` (counts and extremes are the
    /// same on every instruction set; the sums agree within the rounding of a sum).
    ///
    /// ```
    /// use gradguard::{health::TensorStats, kernels::Backend};
    /// for backend in Backend::available() {
    ///     let mut s = TensorStats::EMPTY;
    ///     s.add_slice_on(backend.isa().unwrap(), &[3.0, 4.0]);
    ///     assert_eq!(s.l2_norm(), 5.0);
    /// }
    /// ```
    #[inline]
    pub fn add_slice_on<K: Isa>(&mut self, isa: K, values: &[f32]) {
        let m = isa.moments(values, self.scale_exponent);
        if !self.add_moments(values.len(), &m) {
            self.add_exact(values);
        }
    }

    /// Adds the statistics `m` of `n` values that a kernel gathered; false (and nothing
    /// added) if they saw a non-finite value, whose exact count needs the slow path.
    pub(crate) fn add_moments(&mut self, n: usize, m: &crate::kernels::Moments) -> bool {
        if !(m.sum_squares.is_finite() && m.sum_abs.is_finite()) {
            return false;
        }
        self.raise_scale_to(m.scale_exponent);
        let shift = m.scale_exponent - self.scale_exponent; // ≤ 0: exact scaling down
        self.sum_abs_scaled += scale_by_pow2(m.sum_abs, shift);
        self.sum_squares_scaled += scale_by_pow2(m.sum_squares, 2 * shift);
        self.add_magnitudes(n, &m.magnitudes);
        true
    }

    /// Counts and extremes of `n` finite values.
    fn add_magnitudes(&mut self, n: usize, m: &crate::kernels::Magnitudes) {
        let c = &mut self.counts;
        c.zero = c.zero.saturating_add(m.zero);
        c.subnormal = c.subnormal.saturating_add(m.tiny.saturating_sub(m.zero));
        c.normal = c.normal.saturating_add((n as u64).saturating_sub(m.tiny));
        if m.max_abs > self.max_abs {
            self.max_abs = m.max_abs;
        }
        if m.min_nonzero_abs < self.min_nonzero_abs {
            self.min_nonzero_abs = m.min_nonzero_abs;
        }
    }

    /// [`TensorStats::add_slice`] given the first pass `m` over `values` (which a fused
    /// kernel may have computed while it wrote them).
    /// `[sum_abs, sum_squares]` are the values' Σ|v| and Σ v² at the scale 2^0 if the
    /// kernel summed them too (else NaN); they are used if [`sums_fit`], else the sums take
    /// a second pass at a scale.
    pub(crate) fn add_measured<K: Isa>(
        &mut self,
        isa: K,
        values: &[f32],
        m: crate::kernels::Magnitudes,
        [sum_abs, sum_squares]: [f32; 2],
    ) {
        // ∞ shows as the maximum; NaN as a "zero" when nothing else is nonzero (then every
        // value is a zero or a NaN, counted exactly, a pass over values already in cache),
        // and otherwise as a NaN sum below.
        if m.max_abs == f32::INFINITY || m.max_abs == 0.0 {
            return self.add_exact(values);
        }
        // (Only vector backends sum in the kernel: no trace of this on a microcontroller.)
        if crate::kernels::VECTOR_BACKENDS {
            let moments = crate::kernels::Moments {
                magnitudes: m,
                scale_exponent: 0,
                sum_abs,
                sum_squares,
            };
            if sums_fit(&moments, values.len()) && self.add_moments(values.len(), &moments) {
                return;
            }
        }
        self.raise_scale(m.max_abs);
        let scale_exponent = self.scale_exponent;
        let (sum_abs, sum_squares) = isa.scaled_sums_finite(values, pow2(-scale_exponent));
        let moments = crate::kernels::Moments {
            magnitudes: m,
            scale_exponent,
            sum_abs,
            sum_squares,
        };
        if !self.add_moments(values.len(), &moments) {
            self.add_exact(values);
        }
    }

    /// Makes 2^E, the scale of the sums, exceed `max_abs` (rescaling the sums exactly).
    fn raise_scale(&mut self, max_abs: f32) {
        self.raise_scale_to(exponent_bound(max_abs));
    }

    /// Makes E at least `e`, rescaling the sums by an exact power of two.
    fn raise_scale_to(&mut self, e: i32) {
        if e > self.scale_exponent {
            let shift = self.scale_exponent - e;
            self.sum_abs_scaled = scale_by_pow2(self.sum_abs_scaled, shift);
            self.sum_squares_scaled = scale_by_pow2(self.sum_squares_scaled, 2 * shift);
            self.scale_exponent = e;
        }
    }

    /// The exact path for slices with non-finite values (rare, so a compact scalar loop):
    /// classes by their bits, then the sums over the finite values only.
    #[cold]
    fn add_exact(&mut self, values: &[f32]) {
        // Non-negative floats order like their bit patterns.
        let (mut max_bits, mut min_bits) = (0u32, u32::MAX);
        for &v in values {
            let bits = v.to_bits() & 0x7fff_ffff;
            let class = match classify(v) {
                FloatClass::Zero => &mut self.counts.zero,
                FloatClass::Subnormal => &mut self.counts.subnormal,
                FloatClass::Normal => &mut self.counts.normal,
                FloatClass::Infinite => &mut self.counts.infinite,
                FloatClass::Nan => &mut self.counts.nan,
            };
            *class = class.saturating_add(1);
            if bits < 0x7f80_0000 {
                max_bits = max_bits.max(bits);
                if bits != 0 {
                    min_bits = min_bits.min(bits);
                }
            }
        }
        let max = f32::from_bits(max_bits);
        if max == 0.0 {
            return; // nothing finite and nonzero: the sums do not change
        }
        if max > self.max_abs {
            self.max_abs = max;
        }
        let min = f32::from_bits(min_bits);
        if min < self.min_nonzero_abs {
            self.min_nonzero_abs = min;
        }
        self.raise_scale(max);
        // 2^-E for E ∈ [-126, 128] is an f32 (2^-128 is subnormal but exact), and
        // multiplying by it is exact whenever the product is normal.
        let inverse = pow2(-self.scale_exponent);
        for &v in values.iter().filter(|v| v.is_finite()) {
            let s = v.abs() * inverse;
            self.sum_abs_scaled += s;
            self.sum_squares_scaled += s * s;
        }
    }

    /// Number of values added.
    ///
    /// ```
    /// assert_eq!(gradguard::health::TensorStats::of(&[1.0; 3]).len(), 3);
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.counts.total()
    }

    /// True if no value was added.
    ///
    /// ```
    /// assert!(gradguard::health::TensorStats::EMPTY.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(2^-E, limit/(‖g‖·2^-E))`: multiplying a value by the first, then the second, scales
    /// it by limit/‖g‖ without overflow even where ‖g‖ itself is +∞ (for global norm
    /// clipping; values are below 2^E, so the first product is exact unless subnormal).
    pub(crate) fn rescale_to_norm(&self, limit: f32) -> (f32, f32) {
        let unscale = scale_by_pow2(1.0_f32, -self.scale_exponent);
        (unscale, limit / libm::sqrtf(self.sum_squares_scaled))
    }

    /// ‖g‖₂ over the finite values (+∞ only if the true norm exceeds f32::MAX).
    ///
    /// ```
    /// assert_eq!(gradguard::health::TensorStats::of(&[0.0, 0.0]).l2_norm(), 0.0);
    /// ```
    #[must_use]
    pub fn l2_norm(&self) -> f32 {
        scale_by_pow2(libm::sqrtf(self.sum_squares_scaled), self.scale_exponent)
    }

    /// Mean |g| over the finite values (zeros included; 0 if there are none).
    ///
    /// ```
    /// assert_eq!(gradguard::health::TensorStats::of(&[1.0, -3.0]).mean_abs(), 2.0);
    /// ```
    #[must_use]
    pub fn mean_abs(&self) -> f32 {
        let c = &self.counts;
        let finite = c.zero.saturating_add(c.subnormal).saturating_add(c.normal);
        if finite == 0 {
            return 0.0;
        }
        scale_by_pow2(self.sum_abs_scaled / finite as f32, self.scale_exponent)
    }
}

/// Thresholds of the network-level flags.
///
/// ```
/// use gradguard::health::HealthConfig;
/// let strict = HealthConfig { vanishing_ratio: 1e-2, ..HealthConfig::DEFAULT };
/// assert_eq!(strict.saturation_threshold, 1e-3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HealthConfig {
    /// `Vanishing` when a layer's ‖dz‖ (the error signal backpropagated to it) divided by
    /// the output layer's ‖dz‖ is below this (1e-4).
    pub vanishing_ratio: f32,
    /// `Exploding` when a layer's ‖dW‖ exceeds this (1e3), or any gradient is non-finite.
    pub exploding_norm: f32,
    /// A sigmoid/tanh unit is saturated when its f'(z) is below this for every sample (1e-3).
    pub saturation_threshold: f32,
    /// `Stalled` when a layer's update-to-weight ratio ‖lr·dW‖/‖W‖ is below this (1e-6).
    /// Around 1e-3 is the usual value of a layer that learns; 1e-6 means a million steps
    /// to change the weights by their own size.
    pub stalled_update_ratio: f32,
}

impl HealthConfig {
    /// vanishing_ratio 1e-4, exploding_norm 1e3, saturation_threshold 1e-3,
    /// stalled_update_ratio 1e-6.
    pub const DEFAULT: Self = HealthConfig {
        vanishing_ratio: 1e-4,
        exploding_norm: 1e3,
        saturation_threshold: 1e-3,
        stalled_update_ratio: 1e-6,
    };
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one dense layer's backward pass produced, and what went wrong in it.
///
/// **Underflow** is counted only where it can happen: in a product. A "became
/// subnormal/zero" count is a product of two nonzero finite factors (dz = dy·f'(z), or a
/// term dz·x of dW, or a term dz·w of dX) whose f32 result is zero, or is subnormal and
/// differs from the product an unbounded exponent range would give; or a derivative f'(z)
/// that is zero or subnormal although f' is never zero mathematically. The counts are
/// exact, and identical on every backend: they describe the products as if each were
/// rounded on its own, also where a backend fuses a product into its sum.
///
/// A **structural** zero is one the mathematics asks for (ReLU below zero, an exactly-zero
/// upstream gradient). **Cancellation** is not underflow: IEEE addition is exact whenever
/// its result is subnormal or zero, so a dW, db or dX sum of nonzero terms that is zero or
/// subnormal lost nothing (it shows in the class counts of [`LayerHealth::weight_grad`]
/// and [`LayerHealth::bias_grad`] and raises no flag).
///
/// ```
/// let h = gradguard::health::LayerHealth::EMPTY;
/// assert_eq!(h.underflow_count(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct LayerHealth {
    /// Index of the layer counting from the input (0).
    pub layer: u16,
    /// Dense or batch norm (whose γ, dγ and dβ stand in the places of W, dW and db).
    pub kind: LayerKind,
    /// The activation's name.
    pub activation: &'static str,
    /// Units (outputs) of the layer.
    pub units: u16,
    /// Inputs of the layer.
    pub inputs: u16,
    /// Statistics of dz = dy ⊙ f'(z), the error signal at this layer.
    pub pre_activation_grad: TensorStats,
    /// Statistics of dW.
    pub weight_grad: TensorStats,
    /// Statistics of db.
    pub bias_grad: TensorStats,
    /// Statistics of dx, the gradient this layer passes to the one before it: recorded by
    /// batch norms (when dx is computed); empty for dense layers, whose dx is the dy of
    /// the record before.
    pub input_grad: TensorStats,
    /// ‖W‖ at the time of the backward pass (before the optimiser's update), for the
    /// update-to-weight ratio.
    pub weight_norm: f32,
    /// dz entries that are exactly zero for a structural reason.
    pub pre_activation_structural_zeros: u64,
    /// dz = dy·f'(z) became subnormal from nonzero finite factors, or f'(z) itself
    /// underflowed.
    pub pre_activation_became_subnormal: u64,
    /// dz = dy·f'(z) became zero although dy was nonzero and f'(z) was nonzero or is never
    /// zero mathematically.
    pub pre_activation_became_zero: u64,
    /// Products dz·x feeding dW that became subnormal from nonzero finite factors.
    pub weight_products_became_subnormal: u64,
    /// Products dz·x feeding dW that became zero from nonzero finite factors.
    pub weight_products_became_zero: u64,
    /// Products dz·w feeding dX that became subnormal from nonzero finite factors (0 when
    /// dX was not asked for).
    pub input_products_became_subnormal: u64,
    /// Products dz·w feeding dX that became zero from nonzero finite factors.
    pub input_products_became_zero: u64,
    /// Units whose derivative was 0 for every sample (ReLU-like activations only).
    pub dead_units: u16,
    /// Units whose derivative was below the saturation threshold for every sample
    /// (sigmoid and tanh only).
    pub saturated_units: u16,
    /// The saturation threshold in force when this was recorded.
    pub saturation_threshold: f32,
    /// ‖W‖ this record held at the previous step: the scale of the one-pass ‖W‖ (checked).
    previous_weight_norm: f32,
}

/// The kind of layer a [`LayerHealth`] record describes.
///
/// ```
/// assert_eq!(gradguard::health::LayerHealth::EMPTY.kind, gradguard::health::LayerKind::Dense);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// A [`crate::Dense`] layer: W, dW, db and dX as named.
    #[default]
    Dense,
    /// A [`crate::BatchNorm`] layer: `weight_grad` is dγ, `bias_grad` dβ, `weight_norm`
    /// ‖γ‖, the weight products are dz·x̂ (dγ's terms) and the input products those of dx.
    BatchNorm,
}

impl LayerHealth {
    /// Nothing recorded.
    pub const EMPTY: Self = LayerHealth {
        layer: 0,
        kind: LayerKind::Dense,
        activation: "",
        units: 0,
        inputs: 0,
        pre_activation_grad: TensorStats::EMPTY,
        weight_grad: TensorStats::EMPTY,
        bias_grad: TensorStats::EMPTY,
        input_grad: TensorStats::EMPTY,
        weight_norm: 0.0,
        pre_activation_structural_zeros: 0,
        pre_activation_became_subnormal: 0,
        pre_activation_became_zero: 0,
        weight_products_became_subnormal: 0,
        weight_products_became_zero: 0,
        input_products_became_subnormal: 0,
        input_products_became_zero: 0,
        dead_units: 0,
        saturated_units: 0,
        saturation_threshold: HealthConfig::DEFAULT.saturation_threshold,
        previous_weight_norm: 0.0,
    };

    /// Every underflow this layer saw: products (and derivatives) that became subnormal
    /// or zero.
    ///
    /// ```
    /// let mut h = gradguard::health::LayerHealth::EMPTY;
    /// h.weight_products_became_zero = 3;
    /// assert_eq!(h.underflow_count(), 3);
    /// ```
    #[must_use]
    pub fn underflow_count(&self) -> u64 {
        [
            self.pre_activation_became_subnormal,
            self.pre_activation_became_zero,
            self.weight_products_became_subnormal,
            self.weight_products_became_zero,
            self.input_products_became_subnormal,
            self.input_products_became_zero,
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Non-finite gradient values (dz, dW, db).
    ///
    /// ```
    /// assert_eq!(gradguard::health::LayerHealth::EMPTY.non_finite_count(), 0);
    /// ```
    #[must_use]
    pub fn non_finite_count(&self) -> u64 {
        self.pre_activation_grad
            .counts
            .non_finite()
            .saturating_add(self.weight_grad.counts.non_finite())
            .saturating_add(self.bias_grad.counts.non_finite())
    }

    /// The update-to-weight ratio ‖lr·dW‖ / ‖W‖ of a gradient step with learning rate `lr`
    /// (around 1e-3 is the usual "learning" value; far below means stalled).
    ///
    /// ```
    /// let mut h = gradguard::health::LayerHealth::EMPTY;
    /// h.weight_grad = gradguard::health::TensorStats::of(&[3.0, 4.0]);
    /// h.weight_norm = 10.0;
    /// assert_eq!(h.update_ratio(0.1), 0.05);
    /// ```
    #[must_use]
    pub fn update_ratio(&self, learning_rate: f32) -> f32 {
        learning_rate * self.weight_grad.l2_norm() / self.weight_norm
    }
}

/// Receives per-layer health from backward passes. Implemented by [`NoHealth`] (compiled
/// out) and [`HealthReport`].
///
/// ```
/// use gradguard::health::{GradientObserver, NoHealth};
/// assert!(!NoHealth::ENABLED);
/// ```
pub trait GradientObserver {
    /// False for an observer that records nothing: the kernels then compile to the
    /// untracked loops.
    const ENABLED: bool;

    /// The record for the next dense layer, in backward order (output first); `None` if
    /// nothing is recorded.
    fn next_layer(&mut self) -> Option<&mut LayerHealth>;

    /// Called by [`crate::Trainer::step_observed`] before each backward pass, with the
    /// optimiser's learning rate.
    fn begin_backward(&mut self, _learning_rate: f32) {}
}

/// The observer that records nothing (zero-sized; all tracking compiles away).
///
/// ```
/// use gradguard::health::{GradientObserver, NoHealth};
/// assert!(NoHealth.next_layer().is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoHealth;

impl GradientObserver for NoHealth {
    const ENABLED: bool = false;
    #[inline(always)]
    fn next_layer(&mut self) -> Option<&mut LayerHealth> {
        None
    }
}

/// Which layer (index from the input) first raised each flag, walking from the output
/// layer towards the input as backward does; `None` if the flag is not raised.
///
/// ```
/// let f = gradguard::health::Flags::default();
/// assert!(!f.any());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Flags {
    /// A product (or a derivative) became subnormal or zero from nonzero factors.
    pub underflow: Option<u16>,
    /// A layer's ‖dz‖ relative to the output layer's is below `vanishing_ratio`.
    pub vanishing: Option<u16>,
    /// A layer's ‖dW‖ is above `exploding_norm`, or a gradient is infinite or NaN.
    pub exploding: Option<u16>,
    /// A ReLU-like unit had derivative 0 for every sample of the batch.
    pub dead_units: Option<u16>,
    /// A sigmoid/tanh unit had derivative below the threshold for every sample.
    pub saturated: Option<u16>,
    /// A layer's update-to-weight ratio ‖lr·dW‖/‖W‖ is below `stalled_update_ratio`
    /// (only when the learning rate is known, as in [`crate::Trainer::step_observed`]).
    pub stalled: Option<u16>,
}

impl Flags {
    /// True if any flag is raised.
    ///
    /// ```
    /// let mut f = gradguard::health::Flags::default();
    /// f.dead_units = Some(1);
    /// assert!(f.any());
    /// ```
    #[must_use]
    pub fn any(&self) -> bool {
        self.underflow.is_some()
            || self.vanishing.is_some()
            || self.exploding.is_some()
            || self.dead_units.is_some()
            || self.saturated.is_some()
            || self.stalled.is_some()
    }
}

/// Per-layer gradient health of one backward pass, for up to `L` dense layers.
///
/// Pass it to [`crate::Layer::backward_observed`] or [`crate::Trainer::step_observed`]; it is
/// reset at the start of each training step (call [`HealthReport::reset`] yourself when
/// calling backward directly more than once). Plain `Copy` data: it can live in a `static`.
///
/// ```
/// use gradguard::health::{HealthConfig, HealthReport};
/// static mut REPORT: HealthReport<3> = HealthReport::new(HealthConfig::DEFAULT);
/// let r = HealthReport::<3>::new(HealthConfig::DEFAULT);
/// assert_eq!(r.layers_from_output().len(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HealthReport<const L: usize> {
    /// Records in backward order: `layers[0]` is the output layer.
    layers: [LayerHealth; L],
    /// How many entries of `layers` are filled.
    recorded: usize,
    /// True if the network had more dense layers than `L` (the rest was not recorded).
    pub truncated: bool,
    /// The thresholds used for [`HealthReport::flags`].
    pub config: HealthConfig,
    /// The learning rate of the step (for update ratios), NaN if unknown.
    pub learning_rate: f32,
    /// Whether this CPU flushes subnormals (read, never written).
    pub subnormal_mode: crate::kernels::SubnormalMode,
}

impl<const L: usize> HealthReport<L> {
    /// An empty report with the given thresholds.
    #[must_use]
    pub const fn new(config: HealthConfig) -> Self {
        HealthReport {
            layers: [LayerHealth::EMPTY; L],
            recorded: 0,
            truncated: false,
            config,
            learning_rate: f32::NAN,
            subnormal_mode: crate::kernels::SubnormalMode::Unknown,
        }
    }

    /// Forgets the recorded layers (keeps the configuration) and reads the FPU mode.
    ///
    /// ```
    /// let mut r = gradguard::health::HealthReport::<1>::new(Default::default());
    /// r.reset();
    /// assert!(!r.truncated);
    /// ```
    pub fn reset(&mut self) {
        self.recorded = 0;
        self.truncated = false;
        self.learning_rate = f32::NAN;
        self.subnormal_mode = crate::kernels::subnormal_mode();
    }

    /// The recorded layers, output layer first.
    #[must_use]
    pub fn layers_from_output(&self) -> &[LayerHealth] {
        self.layers.get(..self.recorded).unwrap_or(&[])
    }

    /// The record of layer `index` (counting from the input), if recorded.
    ///
    /// ```
    /// assert!(gradguard::health::HealthReport::<2>::new(Default::default()).layer(0).is_none());
    /// ```
    #[must_use]
    pub fn layer(&self, index: u16) -> Option<&LayerHealth> {
        self.layers_from_output().iter().find(|l| l.layer == index)
    }

    /// The per-layer factor f of a geometric fit ‖dW_l‖ ≈ C·f^(distance from the output)
    /// over the recorded dense layers (batch norms are skipped) except the output layer (least squares on ln ‖dW‖). f < 1:
    /// the gradient shrinks by f per layer going towards the input; about 0.25 for a deep
    /// sigmoid net with Xavier initialisation. `None` with fewer than two such layers with a
    /// nonzero norm.
    ///
    /// ```
    /// let r = gradguard::health::HealthReport::<4>::new(Default::default());
    /// assert_eq!(r.fitted_decay_factor(), None);
    /// ```
    #[must_use]
    pub fn fitted_decay_factor(&self) -> Option<f32> {
        // Points (distance from the output, ln ‖dW‖), skipping the output layer itself.
        let points = self
            .layers_from_output()
            .iter()
            .filter(|l| l.kind == LayerKind::Dense)
            .enumerate()
            .skip(1)
            .map(|(k, l)| (k as f32, l.weight_grad.l2_norm()))
            .filter(|&(_, n)| n > 0.0 && n.is_finite());
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for (x, norm) in points {
            let y = libm::logf(norm);
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let denominator = n * sxx - sx * sx;
        if n < 2.0 || denominator <= 0.0 {
            return None;
        }
        Some(libm::expf((n * sxy - sx * sy) / denominator))
    }

    /// The network-level flags under `self.config`.
    ///
    /// ```
    /// let r = gradguard::health::HealthReport::<2>::new(Default::default());
    /// assert!(!r.flags().any());
    /// ```
    #[must_use]
    pub fn flags(&self) -> Flags {
        let mut flags = Flags::default();
        let layers = self.layers_from_output();
        let output_signal = layers
            .first()
            .map_or(0.0, |l| l.pre_activation_grad.l2_norm());
        let c = &self.config;
        for l in layers {
            let first = |flag: &mut Option<u16>, raised: bool| {
                if raised && flag.is_none() {
                    *flag = Some(l.layer);
                }
            };
            let signal = l.pre_activation_grad.l2_norm();
            first(&mut flags.underflow, l.underflow_count() > 0);
            // NaN-safe: a comparison with NaN is false.
            first(
                &mut flags.vanishing,
                output_signal > 0.0 && signal / output_signal < c.vanishing_ratio,
            );
            first(
                &mut flags.exploding,
                l.weight_grad.l2_norm() > c.exploding_norm || l.non_finite_count() > 0,
            );
            first(&mut flags.dead_units, l.dead_units > 0);
            first(&mut flags.saturated, l.saturated_units > 0);
            // Non-finite gradients are Exploding, not a stalled update.
            first(
                &mut flags.stalled,
                l.non_finite_count() == 0
                    && l.update_ratio(self.learning_rate) < c.stalled_update_ratio,
            );
        }
        flags
    }
}

impl<const L: usize> GradientObserver for HealthReport<L> {
    const ENABLED: bool = true;

    fn begin_backward(&mut self, learning_rate: f32) {
        self.reset();
        self.learning_rate = learning_rate;
    }

    fn next_layer(&mut self) -> Option<&mut LayerHealth> {
        if self.recorded == 0 {
            // One register read per backward pass, so every report says what this FPU does.
            self.subnormal_mode = crate::kernels::subnormal_mode();
        }
        let slot = self.layers.get_mut(self.recorded);
        match slot {
            Some(entry) => {
                let previous = entry.weight_norm;
                *entry = LayerHealth::EMPTY;
                entry.previous_weight_norm = previous;
                entry.saturation_threshold = self.config.saturation_threshold;
                self.recorded += 1;
                Some(entry)
            }
            None => {
                self.truncated = true;
                None
            }
        }
    }
}

/// A record's activation column: the activation, `bn/` before it for a batch norm.
struct Named<'a>(&'a LayerHealth);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.0;
        let prefix = match l.kind {
            LayerKind::Dense => "",
            LayerKind::BatchNorm => "bn/",
        };
        let width = f.width().unwrap_or(0);
        let len = prefix.chars().count() + l.activation.chars().count();
        write!(f, "{prefix}{}", l.activation)?;
        (len..width).try_for_each(|_| f.write_str(" "))
    }
}

impl<const L: usize> fmt::Display for HealthReport<L> {
    /// A compact table, output layer first, then the flags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers = self.layers_from_output();
        let output_signal = layers
            .first()
            .map_or(0.0, |l| l.pre_activation_grad.l2_norm());
        writeln!(
            f,
            "layer activation   shape     |dW|      |dz|      rel-out   min|dW|   mean|dz|  zero/sub(dW) underflow dead sat nonfin upd-ratio"
        )?;
        for l in layers {
            let signal = l.pre_activation_grad.l2_norm();
            write!(
                f,
                "{:>5} {:<12} {:>4}x{:<4} {:<9.2e} {:<9.2e} {:<9.2e} {:<9.2e} {:<9.2e} {:>5}/{:<6} {:>9} {:>4} {:>3} {:>6}",
                l.layer,
                Named(l),
                l.units,
                l.inputs,
                l.weight_grad.l2_norm(),
                signal,
                signal / output_signal,
                l.weight_grad.min_nonzero_abs,
                l.pre_activation_grad.mean_abs(),
                l.weight_grad.counts.zero,
                l.weight_grad.counts.subnormal,
                l.underflow_count(),
                l.dead_units,
                l.saturated_units,
                l.non_finite_count(),
            )?;
            if self.learning_rate.is_nan() {
                writeln!(f, " -")?;
            } else {
                writeln!(f, " {:.2e}", l.update_ratio(self.learning_rate))?;
            }
        }
        let flags = self.flags();
        let show = |f: &mut fmt::Formatter<'_>, name: &str, v: Option<u16>| match v {
            Some(layer) => write!(f, " {name}(layer {layer})"),
            None => Ok(()),
        };
        write!(f, "flags:")?;
        if !flags.any() {
            write!(f, " none")?;
        }
        show(f, "Underflow", flags.underflow)?;
        show(f, "Vanishing", flags.vanishing)?;
        show(f, "Exploding", flags.exploding)?;
        show(f, "DeadUnits", flags.dead_units)?;
        show(f, "Saturated", flags.saturated)?;
        show(f, "Stalled", flags.stalled)?;
        if self.truncated {
            write!(f, " (report truncated: more than {L} layers)")?;
        }
        writeln!(f)?;
        match self.subnormal_mode {
            crate::kernels::SubnormalMode::Flushed => {
                writeln!(
                    f,
                    "subnormals are flushed here: underflow appears as became-zero"
                )
            }
            crate::kernels::SubnormalMode::Preserved => {
                writeln!(f, "subnormals are preserved (gradual underflow)")
            }
            crate::kernels::SubnormalMode::Unknown => {
                writeln!(f, "subnormal handling of this FPU unknown")
            }
        }
    }
}
