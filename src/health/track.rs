//! Health tracking inside the backward pass of a dense layer: the statistics ride on the
//! kernels' own passes where they can (the activation backward tallies dz while it writes
//! it), and the underflow screens are exact tests on extremes that the statistics already
//! give, so a per-element search runs only where some product can underflow.
//!
//! The u64 counters are added with `+`: one backward pass counts at most B·IN·OUT products
//! (far below 2^64 for any array that fits in memory), and 2^64 increments over many passes
//! would take centuries; the totals a user reads saturate.
//!
//! No array proportional to the layer's width lives on the stack: per-unit conditions are
//! vector lanes inside the activation kernel, and everything else is a handful of scalars.

use super::{is_zero_or_subnormal, sums_fit, LayerHealth, TensorStats};
use crate::elementwise::Elementwise;
use crate::kernels::{self, GradMode, Isa};
use crate::lanes::exponent_bound;
use crate::lanes::product_is_exact;

/// The activation backward of an elementwise activation, with health: one fused pass
/// writes dz (bit-identical to the untracked kernel) and tallies the first pass of its
/// statistics, dead and saturated units and derivatives that underflowed; a second pass
/// sums the norms. The per-element underflow attribution runs only when some dz or f' is
/// zero or subnormal, and not at all for step derivatives (ReLU, identity), whose zeros
/// are all structural.
pub(crate) fn elementwise_backward<K: Isa, A: Elementwise>(
    isa: K,
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    units: usize,
    h: &mut LayerHealth,
) {
    let tally =
        isa.activation_backward_observed(activation, z, dy, dz, units, h.saturation_threshold);
    let zeros_before = h.pre_activation_grad.counts.zero;
    let n = z.len().min(dy.len()).min(dz.len());
    let rows = n.checked_div(units).unwrap_or(0);
    let dz = dz.get(..rows * units).unwrap_or(&[]);
    h.pre_activation_grad
        .add_measured(isa, dz, tally.magnitudes, tally.unscaled_sums);
    if activation.can_die() {
        h.dead_units = u16::try_from(tally.dead).unwrap_or(u16::MAX);
    }
    if activation.saturates() {
        h.saturated_units = u16::try_from(tally.saturated).unwrap_or(u16::MAX);
    }
    let zeros = h.pre_activation_grad.counts.zero - zeros_before;
    if tally.magnitudes.tiny == 0 && tally.derivative_tiny == 0 {
        return; // no dz and no f' is zero or subnormal: nothing to attribute
    }
    if activation.derivative_is_step() {
        h.pre_activation_structural_zeros += zeros;
        return;
    }
    let [became_zero, became_subnormal, zeros] =
        isa.attribute_underflow(activation, z, dy, dz, tally.derivative_tiny > 0);
    h.pre_activation_became_zero += became_zero;
    h.pre_activation_became_subnormal += became_subnormal;
    h.pre_activation_structural_zeros += zeros.saturating_sub(became_zero);
}

/// `(became_zero, became_subnormal)` among the products `g·v` for the nonzero finite `v`
/// of `values`, with `g` nonzero and finite: a product underflowed if it is zero, or
/// subnormal and different from the exact product (IEEE 754's underflow: tiny and inexact).
fn products_underflowed(g: f32, values: &[f32]) -> (u64, u64) {
    let (mut zero, mut subnormal) = (0, 0);
    for &v in values {
        if v != 0.0 && v.is_finite() {
            let p = g * v;
            zero += u64::from(p == 0.0);
            let tiny = p != 0.0 && is_zero_or_subnormal(p);
            subnormal += u64::from(tiny && !product_is_exact(g, v, p));
        }
    }
    (zero, subnormal)
}

/// True if `g` is a nonzero finite factor whose products with magnitudes of at least
/// `min_other` may underflow: rounding is monotone, so if fl(|g|·min) ≥ 2^-126 no product
/// with a larger factor is below it.
#[inline]
fn may_underflow(g: f32, min_other: f32) -> bool {
    g != 0.0 && g.is_finite() && g.abs() * min_other < f32::MIN_POSITIVE
}

/// The scale exponents (of ‖W‖ at the previous step, or of dW's bound) within which the
/// vector backends first try sums of |v| itself, without a multiply (checked by `sums_fit`).
const UNSCALED_EXPONENTS: core::ops::RangeInclusive<i32> = -40..=40;

/// True if the statistics `m`, summed at the scale 2^`e` fixed in advance, are as accurate
/// as with the scale of their own maximum: every |v| below 2^e (no sum can overflow) and
/// the maximum above 2^(e−60) (the squares of values within 2^-60 of it stay normal).
fn scale_fits(m: &kernels::Moments, e: i32) -> bool {
    let max = m.magnitudes.max_abs;
    max == 0.0 || (max.is_finite() && (e - 60..=e).contains(&exponent_bound(max)))
}

/// ‖W‖ (scaled, so it neither underflows nor overflows) and, if `smallest`, the smallest
/// nonzero |w|: one pass at the scale of `previous_norm` (‖W‖ at the previous step, ≥ its
/// largest |w|; weights move little per step; unscaled on vector backends if that is within
/// 2^±40), checked, else two.
fn norm_and_min<K: Isa>(isa: K, w: &[f32], previous_norm: f32, smallest: bool) -> (f32, f32) {
    let hinted = (previous_norm > 0.0 && previous_norm.is_finite()).then(|| {
        let e = exponent_bound(previous_norm) + 1;
        let unscaled = UNSCALED_EXPONENTS
            .contains(&e)
            .then(|| isa.norm_unscaled(w, smallest));
        unscaled
            .flatten()
            .unwrap_or_else(|| isa.norm_at_scale(w, e, smallest))
    });
    let m = match hinted {
        Some(m) if sums_fit(&m, w.len()) => m,
        _ => isa.moments(w, -126),
    };
    let norm = crate::lanes::scale_by_pow2(libm::sqrtf(m.sum_squares), m.scale_exponent);
    if norm.is_finite() {
        (norm, m.magnitudes.min_nonzero_abs)
    } else {
        norm_and_min_exact(w)
    }
}

/// [`norm_and_min`] for weights with a non-finite value: the exact statistics, and a NaN
/// norm if some weight is NaN (looked up here: the one-lane pass reports any non-finite sum
/// as +∞, so its sums cannot tell). Out of line, so its state is not on the stack of every
/// step.
#[cold]
#[inline(never)]
fn norm_and_min_exact(w: &[f32]) -> (f32, f32) {
    let s = TensorStats::of(w);
    let nan = w.iter().any(|v| v.is_nan());
    (if nan { f32::NAN } else { s.l2_norm() }, s.min_nonzero_abs)
}

/// The health of a dense layer's backward, after its activation (`dz` is written and its
/// statistics are in `h`) and after the dW/db kernel (`dw`, `db` are its results): the
/// statistics of dW and db with the product screen, and ‖W‖. Returns the smallest nonzero
/// |w| for [`dense_input_products`] if `with_dx`. The caller runs the kernels (one call
/// site for the tracked and the untracked backward); only the flattening depends on the
/// shape, the health work is in shape-independent functions over slices (one copy in a
/// firmware, however many layers it has).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_parameters<K: Isa, const IN: usize, const OUT: usize, const B: usize>(
    isa: K,
    w: &[[f32; IN]; OUT],
    x: &[[f32; IN]; B],
    dz: &[[f32; OUT]; B],
    dw: &[[f32; IN]; OUT],
    db: &[f32; OUT],
    mode: GradMode,
    with_dx: bool,
    h: &mut LayerHealth,
) -> f32 {
    parameter_gradients(
        isa,
        h,
        x.as_flattened(),
        IN,
        dz.as_flattened(),
        dw.as_flattened(),
        db,
        mode,
    );
    weights(isa, h, w.as_flattened(), with_dx)
}

/// The dz·w product screen of dX (after [`dense_parameters`], whose result is `min_w`).
pub(crate) fn dense_input_products<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    min_w: f32,
    h: &mut LayerHealth,
) {
    input_products(h, dz.as_flattened(), OUT, w.as_flattened(), IN, min_w);
}

/// Statistics of dW and db, and the screen of the products dz·x (`x` has rows of `inputs`).
#[allow(clippy::too_many_arguments)]
fn parameter_gradients<K: Isa>(
    isa: K,
    h: &mut LayerHealth,
    x: &[f32],
    inputs: usize,
    dz: &[f32],
    dw: &[f32],
    db: &[f32],
    mode: GradMode,
) {
    let (max_x, min_x) = isa.extremes(x);
    let rows = x.len().checked_div(inputs).unwrap_or(0);
    // |dW| ≤ B·max|dz|·max|x| when it is overwritten: a scale known in advance, so its
    // statistics take one pass (checked; accumulated or non-finite gradients take two).
    let dz_stats = &h.pre_activation_grad;
    let bound = rows as f32 * dz_stats.max_abs * max_x;
    let known = mode == GradMode::Overwrite
        && dz_stats.counts.non_finite() == 0
        && bound.is_finite()
        && bound > 0.0;
    let counted = known && {
        let e = exponent_bound(bound) + 1;
        // Within 2^±40 vector backends sum |dW| itself (one multiply less per vector),
        // checked by the sums; otherwise, or if that fails, at the scale 2^e.
        // (Matched, not chained through `Option`s: a microcontroller's stack holds one
        // `Moments`.)
        let n = dw.len();
        let unscaled = if UNSCALED_EXPONENTS.contains(&e) {
            isa.moments_unscaled(dw)
        } else {
            None
        };
        match unscaled {
            Some(m) if sums_fit(&m, n) => h.weight_grad.add_moments(n, &m),
            _ => {
                let m = isa.moments_at_scale(dw, e);
                scale_fits(&m, e) && h.weight_grad.add_moments(n, &m)
            }
        }
    };
    if !counted {
        h.weight_grad.add_slice_on(isa, dw);
    }
    // db: one pass of unscaled sums on vector backends if they fit, else two.
    match isa.moments_unscaled(db) {
        Some(m) if sums_fit(&m, db.len()) && h.bias_grad.add_moments(db.len(), &m) => {}
        _ => h.bias_grad.add_slice_on(isa, db),
    }
    // One test with the two smallest magnitudes; rows only where it fails.
    let min_dz = h.pre_activation_grad.min_nonzero_abs;
    if min_dz * min_x < f32::MIN_POSITIVE && inputs > 0 {
        let units = dz.len().checked_div(rows).unwrap_or(0);
        for (xs, dzs) in x.chunks(inputs).zip(dz.chunks(units.max(1))) {
            let (_, min_row) = isa.extremes(xs);
            for &g in dzs.iter().filter(|&&g| may_underflow(g, min_row)) {
                let (zero, subnormal) = products_underflowed(g, xs);
                h.weight_products_became_zero += zero;
                h.weight_products_became_subnormal += subnormal;
            }
        }
    }
}

/// ‖W‖ into `h`; returns the smallest nonzero |w| for the dX screen if `smallest` (a layer
/// that computes dX), else a meaningless value.
fn weights<K: Isa>(isa: K, h: &mut LayerHealth, w: &[f32], smallest: bool) -> f32 {
    let (weight_norm, min_w) = norm_and_min(isa, w, h.previous_weight_norm, smallest);
    h.weight_norm = weight_norm;
    min_w
}

/// The screen of the products dz·w feeding dX (`dz` has rows of `units`, `w` of `inputs`).
fn input_products(
    h: &mut LayerHealth,
    dz: &[f32],
    units: usize,
    w: &[f32],
    inputs: usize,
    min_w: f32,
) {
    if h.pre_activation_grad.min_nonzero_abs * min_w >= f32::MIN_POSITIVE
        || units == 0
        || inputs == 0
    {
        return;
    }
    for dzs in dz.chunks(units) {
        for (&g, wo) in dzs.iter().zip(w.chunks(inputs)) {
            if may_underflow(g, min_w) {
                let (zero, subnormal) = products_underflowed(g, wo);
                h.input_products_became_zero += zero;
                h.input_products_became_subnormal += subnormal;
            }
        }
    }
}

/// `(became_zero, became_subnormal)` for the one product `p = a·b`: nonzero finite
/// factors whose product is zero, or subnormal and inexact.
#[inline]
fn product_underflowed(a: f32, b: f32, p: f32) -> (u64, u64) {
    if a == 0.0 || b == 0.0 || !a.is_finite() || !b.is_finite() {
        return (0, 0);
    }
    let tiny = p != 0.0 && is_zero_or_subnormal(p);
    (
        u64::from(p == 0.0),
        u64::from(tiny && !product_is_exact(a, b, p)),
    )
}

/// The slices a batch norm's backward reads (all `[rows][features]` or `[features]`).
pub(crate) struct BatchNormTerms<'a> {
    pub x: &'a [f32],
    pub dz: &'a [f32],
    pub mean: &'a [f32],
    pub variance: &'a [f32],
    pub gamma: &'a [f32],
}

/// The health of a batch norm's backward after the kernel (`dz` is written and its
/// statistics are in `h`; dγ, dβ and dx (empty if not computed) are the kernel's): the
/// statistics of dγ, dβ and dx, ‖γ‖, and the underflow screen of every product: dz·x̂ (dγ's terms) as weight products;
/// x̂·mean(dz·x̂) and γ/σ·(…) (dx's, if `with_dx`) as input products. A batch norm is
/// O(B·N), so the screen recomputes x̂ and the means in the kernel's order (the same
/// operations, so the same bits) instead of screening extremes.
pub(crate) fn batch_norm_backward<K: Isa>(
    isa: K,
    t: &BatchNormTerms<'_>,
    dgamma: &[f32],
    dbeta: &[f32],
    dx: &[f32],
    p: &kernels::BatchNormBackward,
    h: &mut LayerHealth,
) {
    let with_dx = !dx.is_empty();
    h.input_grad.add_slice_on(isa, dx);
    let BatchNormTerms {
        x,
        dz,
        mean,
        variance,
        gamma,
    } = *t;
    h.weight_grad.add_slice_on(isa, dgamma);
    h.bias_grad.add_slice_on(isa, dbeta);
    // ‖γ‖ exactly as the dense layers' exact fallback takes ‖W‖ (NaN if some γ is NaN).
    h.weight_norm = norm_and_min_exact(gamma).0;
    let f = p.features;
    let rows = x.len().min(dz.len()).checked_div(f).unwrap_or(0);
    let features = mean.iter().zip(variance).zip(gamma).enumerate();
    for (j, ((&mu, &var), &g)) in features.take(f) {
        let inverse = 1.0 / libm::sqrtf(var + p.epsilon);
        let column = (0..rows).filter_map(|r| {
            let at = r * f + j;
            Some((*x.get(at)?, *dz.get(at)?))
        });
        let (mut sum, mut sum_normalized) = (0.0f32, 0.0f32);
        for (xv, d) in column.clone() {
            let n = (xv - mu) * inverse;
            let t = d * n;
            let (zero, sub) = product_underflowed(d, n, t);
            h.weight_products_became_zero += zero;
            h.weight_products_became_subnormal += sub;
            sum += d;
            sum_normalized += t;
        }
        if !with_dx {
            continue;
        }
        let k = g * inverse;
        let count = rows as f32;
        let (mean_g, mean_gn) = (sum / count, sum_normalized / count);
        for (xv, d) in column {
            let (inner, product) = if p.batch_statistics {
                let n = (xv - mu) * inverse;
                let t = n * mean_gn;
                let (zero, sub) = product_underflowed(n, mean_gn, t);
                h.input_products_became_zero += zero;
                h.input_products_became_subnormal += sub;
                let inner = (d - mean_g) - t;
                (inner, k * inner)
            } else {
                (d, k * d)
            };
            let (zero, sub) = product_underflowed(k, inner, product);
            h.input_products_became_zero += zero;
            h.input_products_became_subnormal += sub;
        }
    }
}
