//! Health tracking for the backward kernels: the `*_tracked` entry points run the ordinary
//! (dispatched, possibly SIMD) kernel and then account for its result in a second pass over
//! values that are still in cache. The values are therefore those of the untracked kernels
//! bit for bit on every backend, and so are the counts.

use super::GradMode;
use crate::activation::Activation;
use crate::health::{is_zero_or_subnormal, LayerHealth};

/// [`dense_backward_input`](super::dense_backward_input) that also records health (same
/// values, bit for bit): statistics of W, of the dX rows, and the dX entries that are zero
/// or subnormal although some term `dz·w` was nonzero.
///
/// ```
/// let mut h = gradguard::health::LayerHealth::EMPTY;
/// let mut dx = [[0.0; 1]];
/// gradguard::kernels::dense_backward_input_tracked::<true, 1, 1, 1>(&[[1e-30]], &[[1e-20]], &mut dx, Some(&mut h));
/// assert_eq!((dx[0][0], h.input_sums_vanished), (0.0, 1));
/// ```
#[inline]
pub fn dense_backward_input_tracked<
    const TRACK: bool,
    const IN: usize,
    const OUT: usize,
    const B: usize,
>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    dx: &mut [[f32; IN]; B],
    health: Option<&mut LayerHealth>,
) {
    super::dense_backward_input(w, dz, dx);
    let Some(h) = health.filter(|_| TRACK) else {
        return;
    };
    h.weights.add_slice(w.as_flattened());
    h.input_grad.add_slice(dx.as_flattened());
    // Which columns of W have a nonzero entry: gathered only once some dX entry needs it.
    let mut columns: Option<[bool; IN]> = None;
    for (dzs, dxs) in dz.iter().zip(dx.iter()) {
        if !dzs.iter().any(|&g| g != 0.0) || !any_zero_or_subnormal(dxs) {
            continue;
        }
        let w_column_nonzero = columns.get_or_insert_with(|| {
            let mut flags = [false; IN];
            for wo in w {
                for (flag, &wi) in flags.iter_mut().zip(wo.iter()) {
                    *flag |= wi != 0.0;
                }
            }
            flags
        });
        for (i, &v) in dxs.iter().enumerate() {
            if is_zero_or_subnormal(v) && w_column_nonzero.get(i).copied().unwrap_or(false) {
                let some_term = dzs
                    .iter()
                    .zip(w.iter())
                    .any(|(&g, wo)| g != 0.0 && wo.get(i).is_some_and(|&wi| wi != 0.0));
                h.input_sums_vanished += u32::from(some_term);
            }
        }
    }
}

/// True if some entry is ±0 or subnormal (a branch-free scan that vectorises).
#[inline]
fn any_zero_or_subnormal(values: &[f32]) -> bool {
    // A count, not `any`: an early exit would keep LLVM from vectorising the scan.
    let count: u32 = values
        .iter()
        .map(|v| u32::from(v.to_bits() & 0x7f80_0000 == 0))
        .sum();
    count != 0
}

/// [`dense_backward_params`](super::dense_backward_params) that also records health (same
/// values, bit for bit).
///
/// * Products `dz[s][o]·x[s][i]` of nonzero finite factors that round to a subnormal or to
///   zero are counted exactly, without a test per multiply: with m = the smallest nonzero
///   `|x[s][i]|`, rounding is monotone, so if fl(|dz|·m) ≥ 2^-126 no product of that row can
///   underflow. Only rows that fail this test are counted one by one.
/// * A zero or subnormal dW or db entry counts as vanished if some term of its sum was
///   nonzero, and as structural otherwise.
///
/// ```
/// use gradguard::GradMode;
/// let mut h = gradguard::health::LayerHealth::EMPTY;
/// let (mut dw, mut db) = ([[0.0; 2]; 1], [0.0; 1]);
/// gradguard::kernels::dense_backward_params_tracked::<true, 2, 1, 1>(
///     &[[1e-30]], &[[1e-20, 0.0]], &mut dw, &mut db, GradMode::Overwrite, Some(&mut h));
/// assert_eq!(h.weight_products_became_zero, 1); // 1e-50 → 0; the 0·x term is structural
/// assert_eq!(h.weight_sums_vanished, 1);
/// ```
#[inline]
pub fn dense_backward_params_tracked<
    const TRACK: bool,
    const IN: usize,
    const OUT: usize,
    const B: usize,
>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
    dw: &mut [[f32; IN]; OUT],
    db: &mut [f32; OUT],
    mode: GradMode,
    health: Option<&mut LayerHealth>,
) {
    super::dense_backward_params(dz, x, dw, db, mode);
    let Some(h) = health.filter(|_| TRACK) else {
        return;
    };
    // Which input columns and which units have a nonzero entry in the batch: a zero sum
    // whose column or unit is all zero is structural, found without a search.
    // Bit s of a mask: sample s (of the first 64) has a nonzero entry there.
    let mut x_column_samples = [0u64; IN];
    let mut unit_samples = [0u64; OUT];
    for (s, (xs, dzs)) in x.iter().zip(dz.iter()).enumerate() {
        let bit = if s < 64 { 1u64 << s } else { 1u64 << 63 };
        for (mask, &v) in x_column_samples.iter_mut().zip(xs.iter()) {
            *mask |= if v != 0.0 { bit } else { 0 };
        }
        for (mask, &g) in unit_samples.iter_mut().zip(dzs.iter()) {
            *mask |= if g != 0.0 { bit } else { 0 };
        }
        // Products that underflow: the screen, then an exact count where it fails.
        let min_x = super::min_nonzero_abs(xs);
        // |g|·min_x is ∞ or NaN for a non-finite g (or min_x = +∞), failing the test.
        let screen = |g: f32| (g != 0.0) & (g.abs() * min_x < f32::MIN_POSITIVE);
        let failing: u32 = dzs.iter().map(|&g| u32::from(screen(g))).sum();
        if failing == 0 {
            continue;
        }
        for &g in dzs {
            if screen(g) {
                for &xi in xs {
                    if xi != 0.0 && xi.is_finite() {
                        let p = g * xi;
                        h.weight_products_became_zero += u32::from(p == 0.0);
                        h.weight_products_became_subnormal +=
                            u32::from(p != 0.0 && is_zero_or_subnormal(p));
                    }
                }
            }
        }
    }
    h.weight_grad.add_slice(dw.as_flattened());
    for (o, (dwo, &unit)) in dw.iter().zip(unit_samples.iter()).enumerate() {
        if unit != 0 && any_zero_or_subnormal(dwo) {
            h.weight_sums_vanished += count_vanished_sums(dwo, o, unit, &x_column_samples, dz, x);
        }
    }
    h.bias_grad.add_slice(db);
    for (&v, &samples) in db.iter().zip(unit_samples.iter()) {
        h.bias_sums_vanished += u32::from(samples != 0 && is_zero_or_subnormal(v));
    }
}
/// Zero or subnormal entries of the finished row `dw[o]` whose sum had a nonzero term
/// `dz[s][o]·x[s][i]`. `unit` and `columns` are sample masks (bit s: nonzero in sample s);
/// with at most 64 samples a shared bit decides, otherwise bit 63 stands for "some sample
/// from 63 on" and those samples are searched.
fn count_vanished_sums<const IN: usize, const OUT: usize, const B: usize>(
    row: &[f32; IN],
    o: usize,
    unit: u64,
    columns: &[u64; IN],
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
) -> u32 {
    let mut count = 0;
    for ((i, &v), &column) in row.iter().enumerate().zip(columns.iter()) {
        if column & unit == 0 || !is_zero_or_subnormal(v) {
            continue;
        }
        let shared = column & unit;
        let some_term = if B <= 64 || shared & ((1u64 << 63) - 1) != 0 {
            true
        } else {
            dz.iter().zip(x.iter()).skip(63).any(|(dzs, xs)| {
                dzs.get(o).is_some_and(|&g| g != 0.0) && xs.get(i).is_some_and(|&xi| xi != 0.0)
            })
        };
        count += u32::from(some_term);
    }
    count
}

/// Backward through an activation for a whole batch, with health: `dz = dy ⊙ f'(z)` for
/// elementwise activations — bit-identical to the row form — plus the underflow
/// attribution of each product, dead and saturated units. Activations without an
/// elementwise derivative (softmax) use their row backward and only the statistics of dz
/// are recorded.
///
/// ```
/// use gradguard::Sigmoid;
/// let mut h = gradguard::health::LayerHealth::EMPTY;
/// let z = [[200.0, 0.0]];
/// let mut dz = [[0.0; 2]];
/// gradguard::kernels::activation_backward_tracked(&Sigmoid, &z, &z, &[[1.0, 0.0]], &mut dz, &mut h);
/// assert_eq!(h.pre_activation_became_zero, 1);      // σ'(200) is below 2^-150
/// assert_eq!(h.pre_activation_structural_zeros, 1); // the upstream gradient was 0
/// assert_eq!(h.saturated_units, 1);
/// ```
pub fn activation_backward_tracked<A: Activation, const N: usize, const B: usize>(
    activation: &A,
    z: &[[f32; N]; B],
    a: &[[f32; N]; B],
    dy: &[[f32; N]; B],
    dz: &mut [[f32; N]; B],
    h: &mut LayerHealth,
) {
    let never_zero = activation.derivative_never_zero();
    let threshold = h.saturation_threshold;
    // Per unit: derivative zero / below the threshold for every sample so far.
    let mut all_zero = [B > 0; N];
    let mut all_below = [B > 0; N];
    let mut derivative = [0.0f32; N];
    let rows = z.iter().zip(a.iter()).zip(dy.iter()).zip(dz.iter_mut());
    for (((zs, as_), gs), ds) in rows {
        if !activation.derivative_row(zs, &mut derivative) {
            activation.backward(zs, as_, gs, ds);
            h.pre_activation_grad.add_slice(ds);
            continue;
        }
        super::multiply(gs, &derivative, ds);
        h.pre_activation_grad.add_slice(ds);
        let units = all_zero.iter_mut().zip(all_below.iter_mut());
        for ((zero, below), &d) in units.zip(derivative.iter()) {
            *zero &= d == 0.0;
            *below &= d < threshold;
        }
        if !any_zero_or_subnormal(ds) {
            continue;
        }
        // Branch-free, so the loop vectorises: every condition is a 0/1 count.
        let (mut became_zero, mut structural, mut became_subnormal) = (0u32, 0u32, 0u32);
        for ((&p, &g), &d) in ds.iter().zip(gs.iter()).zip(derivative.iter()) {
            let tiny = is_zero_or_subnormal(p);
            let g_ok = (g != 0.0) & g.is_finite();
            let factors_nonzero = g_ok & (d != 0.0) & d.is_finite();
            let zero = p == 0.0;
            let lost = factors_nonzero | ((d == 0.0) & never_zero & g_ok);
            became_zero += u32::from(zero & lost);
            structural += u32::from(zero & !lost);
            became_subnormal += u32::from(tiny & !zero & factors_nonzero);
        }
        h.pre_activation_became_zero += became_zero;
        h.pre_activation_structural_zeros += structural;
        h.pre_activation_became_subnormal += became_subnormal;
    }
    let dead = all_zero.iter().filter(|&&v| v).count();
    let saturated = all_below.iter().filter(|&&v| v).count();
    if activation.can_die() {
        h.dead_units = u16::try_from(dead).unwrap_or(u16::MAX);
    }
    if activation.saturates() {
        h.saturated_units = u16::try_from(saturated).unwrap_or(u16::MAX);
    }
}
