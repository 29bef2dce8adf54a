//! Portable scalar kernels: the reference implementation and the microcontroller path.
//!
//! The order of every floating-point operation here is part of the contract (documented per
//! function), because other backends are tested against it. No fused multiply-add is used:
//! `libm::fmaf` is software on Cortex-M4 (≈ 280 instructions a call), and `a * b + c` rounds
//! twice on every target alike.

use super::GradMode;
use crate::activation::Activation;
use crate::health::{is_zero_or_subnormal, min_nonzero_abs, LayerHealth};

/// Dense forward for a batch: `z[s][o] = (Σ_i w[o][i]·x[s][i]) + b[o]`.
///
/// Order: the dot product is summed from `i = 0` upwards starting at +0.0, then the bias is
/// added. Weights are `OUT × IN` row-major.
///
/// ```
/// let mut z = [[0.0; 1]; 2];
/// gradguard::kernels::dense_forward(&[[2.0, -1.0]], &[1.0], &[[1.0, 1.0], [0.0, 3.0]], &mut z);
/// assert_eq!(z, [[2.0], [-2.0]]);
/// ```
#[inline]
pub fn dense_forward<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    z: &mut [[f32; OUT]; B],
) {
    for (xs, zs) in x.iter().zip(z.iter_mut()) {
        // Cortex-M with an FPU: the whole sample in hand-scheduled VFP code, when the shape
        // allows (IN a multiple of 16, OUT even); same operations in the same order.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if OUT % 2 == 0 && super::cortex_m::dense_rows(w.as_flattened(), b, xs, zs, IN, OUT / 2) {
            continue;
        }
        // Two output rows at a time share each load of x, inputs eight at a time so
        // adjacent loads can merge (vldm on Cortex-M). Every accumulator still adds its
        // products in input order, so the result is that of the plain loop, bit for bit.
        let pairs = w
            .chunks_exact(2)
            .zip(b.chunks_exact(2))
            .zip(zs.chunks_exact_mut(2));
        for ((rows, bias), out) in pairs {
            if let ([w0, w1], [b0, b1], [z0, z1]) = (rows, bias, out) {
                let (a0, a1) = dot2(w0, w1, xs);
                *z0 = a0 + b0;
                *z1 = a1 + b1;
            }
        }
        if OUT % 2 == 1 {
            if let (Some(wo), Some(bo), Some(zo)) = (w.last(), b.last(), zs.last_mut()) {
                let (a, _) = dot2(wo, wo, xs);
                *zo = a + bo;
            }
        }
    }
}

/// Σ_i w0[i]·x[i] and Σ_i w1[i]·x[i], each summed from i = 0 upwards starting at +0.0.
/// On a Cortex-M with an FPU the blocks of eight run as hand-scheduled VFP code
/// (`kernels::cortex_m`), with the same operations in the same order.
#[inline(always)]
fn dot2<const IN: usize>(w0: &[f32; IN], w1: &[f32; IN], x: &[f32; IN]) -> (f32, f32) {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (mut a0, mut a1) = super::cortex_m::dot2_blocks(w0, w1, x, IN / 8);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    let (mut a0, mut a1) = {
        let (mut a0, mut a1) = (0.0f32, 0.0f32);
        let blocks = w0
            .chunks_exact(8)
            .zip(w1.chunks_exact(8))
            .zip(x.chunks_exact(8));
        for ((c0, c1), cx) in blocks {
            for ((&p, &q), &v) in c0.iter().zip(c1.iter()).zip(cx.iter()) {
                a0 += p * v;
                a1 += q * v;
            }
        }
        (a0, a1)
    };
    let tail = IN - IN % 8;
    for ((&p, &q), &v) in w0[tail..]
        .iter()
        .zip(w1[tail..].iter())
        .zip(x[tail..].iter())
    {
        a0 += p * v;
        a1 += q * v;
    }
    (a0, a1)
}

/// `y[k] += a·x[k]` (one rounding for the product, one for the sum).
#[inline(always)]
fn axpy<const N: usize>(y: &mut [f32; N], a: f32, x: &[f32; N]) {
    for (d, xi) in y.iter_mut().zip(x.iter()) {
        *d += a * xi;
    }
}

/// Dense backward to the input: `dx[s][i] = Σ_o dz[s][o]·w[o][i]` (always overwrites `dx`).
///
/// Order: for each sample, `dx` starts at +0.0 and rows of `w` are added for `o = 0, 1, …`.
///
/// ```
/// let mut dx = [[9.0; 2]];
/// gradguard::kernels::dense_backward_input(&[[1.0, 2.0], [3.0, 4.0]], &[[1.0, -1.0]], &mut dx);
/// assert_eq!(dx, [[-2.0, -2.0]]);
/// ```
#[inline]
pub fn dense_backward_input<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    dx: &mut [[f32; IN]; B],
) {
    dense_backward_input_tracked::<false, IN, OUT, B>(w, dz, dx, None);
}

/// [`dense_backward_input`] that also records health (same values, bit for bit): statistics
/// of W (gathered while the first sample reads it), of the finished dX rows, and the dX
/// entries that are zero or subnormal although some term `dz·w` was nonzero.
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
    mut health: Option<&mut LayerHealth>,
) {
    // Which columns of W have a nonzero entry (gathered while the first sample reads W).
    let mut w_column_nonzero = [false; IN];
    for (s, (dzs, dxs)) in dz.iter().zip(dx.iter_mut()).enumerate() {
        *dxs = [0.0; IN];
        match (TRACK && s == 0, health.as_deref_mut()) {
            // A separate loop for the first tracked sample keeps the plain one vectorised.
            (true, Some(h)) => {
                for (wo, &g) in w.iter().zip(dzs.iter()) {
                    axpy(dxs, g, wo);
                    h.weights.add_slice(wo);
                    for (flag, &wi) in w_column_nonzero.iter_mut().zip(wo.iter()) {
                        *flag |= wi != 0.0;
                    }
                }
            }
            _ => {
                for (wo, &g) in w.iter().zip(dzs.iter()) {
                    axpy(dxs, g, wo);
                }
            }
        }
        if let (true, Some(h)) = (TRACK, health.as_deref_mut()) {
            h.input_grad.add_slice(dxs);
            if dzs.iter().any(|&g| g != 0.0) {
                for (i, &v) in dxs.iter().enumerate() {
                    if is_zero_or_subnormal(v) && w_column_nonzero.get(i).copied().unwrap_or(false)
                    {
                        let some_term = dzs
                            .iter()
                            .zip(w.iter())
                            .any(|(&g, wo)| g != 0.0 && wo.get(i).is_some_and(|&wi| wi != 0.0));
                        h.input_sums_vanished += u32::from(some_term);
                    }
                }
            }
        }
    }
}

/// Dense backward to the parameters: `dw[o][i] (+)= Σ_s dz[s][o]·x[s][i]`,
/// `db[o] (+)= Σ_s dz[s][o]`.
///
/// Order: with [`GradMode::Overwrite`] both start at +0.0; samples are added for
/// `s = 0, 1, …`.
///
/// ```
/// use gradguard::GradMode;
/// let (mut dw, mut db) = ([[0.0; 2]; 1], [0.0; 1]);
/// let dz = [[2.0], [1.0]];
/// let x = [[1.0, 0.5], [4.0, 0.0]];
/// gradguard::kernels::dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
/// assert_eq!((dw, db), ([[6.0, 1.0]], [3.0]));
/// ```
#[inline]
pub fn dense_backward_params<const IN: usize, const OUT: usize, const B: usize>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
    dw: &mut [[f32; IN]; OUT],
    db: &mut [f32; OUT],
    mode: GradMode,
) {
    dense_backward_params_tracked::<false, IN, OUT, B>(dz, x, dw, db, mode, None);
}

/// [`dense_backward_params`] that also records health (same values, bit for bit).
///
/// * Products `dz[s][o]·x[s][i]` of nonzero finite factors that round to a subnormal or to
///   zero are counted exactly, without a test per multiply: with m = the smallest nonzero
///   `|x[s][i]|`, rounding is monotone, so if fl(|dz|·m) ≥ 2^-126 no product of that row can
///   underflow. Only rows that fail this test are counted one by one.
/// * The finished dW and db entries are classified while the last sample's row is hot; a
///   zero or subnormal entry counts as vanished if some term of its sum was nonzero, and as
///   structural otherwise.
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
    mut health: Option<&mut LayerHealth>,
) {
    if mode == GradMode::Overwrite {
        *dw = [[0.0; IN]; OUT];
        *db = [0.0; OUT];
    }
    // Which input columns and which units have a nonzero entry in the batch: a zero sum
    // whose column or unit is all zero is structural, found without a search.
    // Bit s of a mask: sample s (of the first 64) has a nonzero entry there.
    let mut x_column_samples = [0u64; IN];
    let mut unit_samples = [0u64; OUT];
    if TRACK {
        for (s, (xs, dzs)) in x.iter().zip(dz.iter()).enumerate() {
            let bit = if s < 64 { 1u64 << s } else { 1u64 << 63 };
            for (mask, &v) in x_column_samples.iter_mut().zip(xs.iter()) {
                *mask |= if v != 0.0 { bit } else { 0 };
            }
            for (mask, &g) in unit_samples.iter_mut().zip(dzs.iter()) {
                *mask |= if g != 0.0 { bit } else { 0 };
            }
        }
    }
    for (s, (dzs, xs)) in dz.iter().zip(x.iter()).enumerate() {
        // Smallest nonzero finite |x| of this sample, for the underflow screen.
        let min_x = if TRACK {
            min_nonzero_abs(xs)
        } else {
            f32::INFINITY
        };
        let last = s + 1 == B;
        for (o, ((dwo, dbo), &g)) in dw.iter_mut().zip(db.iter_mut()).zip(dzs.iter()).enumerate() {
            *dbo += g;
            axpy(dwo, g, xs);
            let Some(h) = health.as_deref_mut().filter(|_| TRACK) else {
                continue;
            };
            // g is finite and nonzero and min_x finite or +∞, so the product is never NaN.
            if g != 0.0 && g.is_finite() && g.abs() * min_x < f32::MIN_POSITIVE {
                for &xi in xs {
                    if xi != 0.0 && xi.is_finite() {
                        let p = g * xi;
                        h.weight_products_became_zero += u32::from(p == 0.0);
                        h.weight_products_became_subnormal +=
                            u32::from(p != 0.0 && is_zero_or_subnormal(p));
                    }
                }
            }
            if last {
                h.weight_grad.add_slice(dwo);
                let unit = unit_samples.get(o).copied().unwrap_or(0);
                if unit != 0 {
                    h.weight_sums_vanished +=
                        count_vanished_sums(dwo, o, unit, &x_column_samples, dz, x);
                }
            }
        }
    }
    if let (true, Some(h)) = (TRACK, health) {
        h.bias_grad.add_slice(db);
        for (&v, &samples) in db.iter().zip(unit_samples.iter()) {
            h.bias_sums_vanished += u32::from(samples != 0 && is_zero_or_subnormal(v));
        }
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

/// Backward through an activation for a whole batch, with
/// health: `dz = dy ⊙ f'(z)` for elementwise activations — bit-identical to the row form —
/// plus the underflow attribution of each product, dead and saturated units. Activations
/// without an elementwise derivative (softmax) use their row backward and only the
/// statistics of dz are recorded.
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
    if activation.elementwise_derivative(0.0).is_none() {
        for (((zs, as_), gs), ds) in z.iter().zip(a.iter()).zip(dy.iter()).zip(dz.iter_mut()) {
            activation.backward(zs, as_, gs, ds);
            ds.iter().for_each(|&v| h.pre_activation_grad.add(v));
        }
        return;
    }
    let never_zero = activation.derivative_never_zero();
    let threshold = h.saturation_threshold;
    // Per unit: derivative zero / below the threshold for every sample so far.
    let mut all_zero = [B > 0; N];
    let mut all_below = [B > 0; N];
    let mut derivative = [0.0f32; N];
    for ((zs, gs), ds) in z.iter().zip(dy.iter()).zip(dz.iter_mut()) {
        for (d, &v) in derivative.iter_mut().zip(zs.iter()) {
            *d = activation.elementwise_derivative(v).unwrap_or(f32::NAN);
        }
        for ((out, &g), &d) in ds.iter_mut().zip(gs.iter()).zip(derivative.iter()) {
            *out = g * d;
        }
        h.pre_activation_grad.add_slice(ds);
        for (o, ((&p, &g), &d)) in ds.iter().zip(gs.iter()).zip(derivative.iter()).enumerate() {
            if is_zero_or_subnormal(p) {
                let g_ok = g != 0.0 && g.is_finite();
                let factors_nonzero = g_ok && d != 0.0 && d.is_finite();
                if p == 0.0 {
                    if factors_nonzero || (d == 0.0 && never_zero && g_ok) {
                        h.pre_activation_became_zero += 1;
                    } else {
                        h.pre_activation_structural_zeros += 1;
                    }
                } else if factors_nonzero {
                    h.pre_activation_became_subnormal += 1;
                }
            }
            if let (Some(zero), Some(below)) = (all_zero.get_mut(o), all_below.get_mut(o)) {
                *zero &= d == 0.0;
                *below &= d < threshold;
            }
        }
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

/// Elementwise `out[k] = f(input[k])`.
///
/// ```
/// let mut a = [0.0; 3];
/// gradguard::kernels::map(&[1.0, -2.0, 3.0], &mut a, |v| v * 2.0);
/// assert_eq!(a, [2.0, -4.0, 6.0]);
/// ```
#[inline(always)]
pub fn map(input: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &v) in out.iter_mut().zip(input.iter()) {
        *o = f(v);
    }
}

/// Elementwise backward through an activation: `dz[k] = dy[k] · f'(z[k])`.
///
/// ```
/// let mut dz = [0.0; 2];
/// gradguard::kernels::map_backward(&[1.0, -1.0], &[0.5, 0.5], &mut dz, |v| if v > 0.0 { 1.0 } else { 0.0 });
/// assert_eq!(dz, [0.5, 0.0]);
/// ```
#[inline(always)]
pub fn map_backward(z: &[f32], dy: &[f32], dz: &mut [f32], derivative: impl Fn(f32) -> f32) {
    for ((d, &v), &g) in dz.iter_mut().zip(z.iter()).zip(dy.iter()) {
        *d = g * derivative(v);
    }
}

/// Writes `a[k] = e^(z[k]−m)` with m = max z and returns `(m, Σ_k a[k])`, the sum
/// compensated (Neumaier) so it is correct to about 1 ulp for any row length.
#[inline]
fn exp_shifted_row(z: &[f32], a: &mut [f32]) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    for &v in z {
        // NaN is skipped here; it reaches the sum below and poisons the row.
        if v > m {
            m = v;
        }
    }
    let (mut sum, mut compensation) = (0.0_f32, 0.0_f32);
    for (o, &v) in a.iter_mut().zip(z.iter()) {
        let e = crate::math::exp(v - m);
        *o = e;
        let t = sum + e;
        compensation += if sum.abs() >= e.abs() {
            (sum - t) + e
        } else {
            (e - t) + sum
        };
        sum = t;
    }
    (m, sum + compensation)
}

/// Row softmax, max-subtracted: `a[k] = e^(z[k]−m) / Σ_j e^(z[j]−m)` with m = max z.
///
/// The sum is compensated, so each row sums to 1 within a few 1e-8 for any length. Finite
/// logits of any size (±3e38) give no NaN: differences that overflow to −∞ give e^−∞ = 0.
/// A NaN anywhere in the row, or +∞, makes the whole row NaN.
///
/// ```
/// let mut a = [0.0; 3];
/// gradguard::kernels::softmax_row(&[3e38, -3e38, 3e38], &mut a);
/// assert_eq!(a, [0.5, 0.0, 0.5]);
/// ```
#[inline]
pub fn softmax_row(z: &[f32], a: &mut [f32]) {
    let (_, sum) = exp_shifted_row(z, a);
    for o in a.iter_mut() {
        *o /= sum;
    }
}

/// Fused softmax cross-entropy for one row with class `label`: writes
/// `g = (softmax(z) − onehot(label)) · scale` and returns the loss
/// `ln Σ_j e^(z_j−m) − (z_label − m)` (m = max z), which never takes the logarithm of an
/// underflowed probability. A `label` outside the row gives a NaN loss and no one-hot term.
///
/// ```
/// let mut g = [0.0; 2];
/// let loss = gradguard::kernels::softmax_cross_entropy_row(&[0.0, 0.0], 1, &mut g, 1.0);
/// assert_eq!(g, [0.5, -0.5]);
/// assert!((loss - 2.0_f32.ln()).abs() < 1e-7);
/// ```
#[inline]
pub fn softmax_cross_entropy_row(z: &[f32], label: usize, g: &mut [f32], scale: f32) -> f32 {
    let (m, sum) = exp_shifted_row(z, g);
    for (k, gk) in g.iter_mut().enumerate() {
        let onehot = if k == label { 1.0 } else { 0.0 };
        *gk = (*gk / sum - onehot) * scale;
    }
    let z_label = z.get(label).copied().unwrap_or(f32::NAN);
    libm::logf(sum) - (z_label - m)
}

/// Squared error of one row: writes `g = 2·(y − t)·scale` and returns `Σ (y − t)²`.
///
/// ```
/// let mut g = [0.0; 2];
/// assert_eq!(gradguard::kernels::squared_error_row(&[1.0, 3.0], &[0.0, 1.0], &mut g, 0.5), 5.0);
/// assert_eq!(g, [1.0, 2.0]);
/// ```
#[inline]
pub fn squared_error_row(y: &[f32], t: &[f32], g: &mut [f32], scale: f32) -> f32 {
    let mut total = 0.0_f32;
    for ((&yk, &tk), gk) in y.iter().zip(t.iter()).zip(g.iter_mut()) {
        let d = yk - tk;
        total += d * d;
        *gk = 2.0 * d * scale;
    }
    total
}

/// Binary cross-entropy on logits for one row: writes `g = (σ(z) − t)·scale` and returns
/// `Σ max(z, 0) − z·t + ln(1 + e^−|z|)`.
///
/// σ(z) − t is evaluated as `(1 − t)·σ(z) − t·σ(−z)` with both σ from one e = e^−|z|, so a
/// confident, correct prediction gets its true tiny gradient (−3.7e-44 at z = 100, t = 1)
/// instead of the false zero `σ(z) − 1 = 1 − 1` gives.
///
/// ```
/// let mut g = [0.0; 1];
/// gradguard::kernels::binary_cross_entropy_with_logits_row(&[100.0], &[1.0], &mut g, 1.0);
/// assert!(g[0] < 0.0);
/// ```
#[inline]
pub fn binary_cross_entropy_with_logits_row(
    z: &[f32],
    t: &[f32],
    g: &mut [f32],
    scale: f32,
) -> f32 {
    let mut total = 0.0_f32;
    for ((&zk, &tk), gk) in z.iter().zip(t.iter()).zip(g.iter_mut()) {
        let e = crate::math::exp(-zk.abs());
        let (small, large) = (e / (1.0 + e), 1.0 / (1.0 + e));
        // `zk >= 0` is false for NaN, whose e is NaN: both branches give NaN.
        let (s_pos, s_neg) = if zk >= 0.0 {
            (large, small)
        } else {
            (small, large)
        };
        let positive = if zk > 0.0 { zk } else { 0.0 };
        total += positive - zk * tk + libm::log1pf(e);
        *gk = ((1.0 - tk) * s_pos - tk * s_neg) * scale;
    }
    total
}

/// Backward through a row softmax with output `a`: `dz = a ⊙ (dy − ⟨dy, a⟩)`.
///
/// ```
/// let mut dz = [0.0; 2];
/// gradguard::kernels::softmax_backward_row(&[0.5, 0.5], &[1.0, 0.0], &mut dz);
/// assert_eq!(dz, [0.25, -0.25]);
/// ```
#[inline]
pub fn softmax_backward_row(a: &[f32], dy: &[f32], dz: &mut [f32]) {
    let mut dot = 0.0_f32;
    for (&g, &s) in dy.iter().zip(a.iter()) {
        dot += g * s;
    }
    for ((d, &g), &s) in dz.iter_mut().zip(dy.iter()).zip(a.iter()) {
        *d = s * (g - dot);
    }
}

/// Plain SGD with L2 weight decay: `w −= lr · (g + λ·w)`.
///
/// ```
/// let mut w = [1.0, 2.0];
/// gradguard::kernels::sgd_update(&mut w, &[0.5, -1.0], 0.1, 0.0);
/// assert_eq!(w, [0.95, 2.1]);
/// ```
#[inline]
pub fn sgd_update(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) {
    for (wk, &gk) in w.iter_mut().zip(g.iter()) {
        let step = gk + weight_decay * *wk;
        *wk -= lr * step;
    }
}

/// SGD with momentum (PyTorch convention): `v = μ·v + (g + λ·w)`, `w −= lr · v`.
///
/// ```
/// let (mut w, mut v) = ([1.0], [1.0]);
/// gradguard::kernels::sgd_momentum_update(&mut w, &[0.5], &mut v, 0.5, 0.9, 0.0);
/// assert_eq!((w, v), ([0.3], [1.4]));
/// ```
#[inline]
pub fn sgd_momentum_update(
    w: &mut [f32],
    g: &[f32],
    velocity: &mut [f32],
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) {
    for ((wk, &gk), vk) in w.iter_mut().zip(g.iter()).zip(velocity.iter_mut()) {
        let step = gk + weight_decay * *wk;
        *vk = momentum * *vk + step;
        *wk -= lr * *vk;
    }
}

/// One Adam step (Kingma & Ba, with L2 weight decay added to the gradient):
/// `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
/// `w −= lr_t · m / (√v + ε_t)` where `lr_t = lr·√(1−β2^t)/(1−β1^t)` and
/// `ε_t = ε·√(1−β2^t)` (the bias corrections folded into two scalars, so
/// the loop does one square root and one division per element).
///
/// `bias1 = 1 − β1^t`, `bias2 = 1 − β2^t` are passed in by the optimiser.
///
/// ```
/// let (mut w, mut m, mut v) = ([1.0], [0.0], [0.0]);
/// gradguard::kernels::adam_update(&mut w, &[0.5], &mut m, &mut v, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001);
/// assert!((w[0] - 0.9).abs() < 1e-6); // the first Adam step moves by lr
/// ```
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn adam_update(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
) {
    let root_bias2 = libm::sqrtf(bias2);
    let lr_t = lr * root_bias2 / bias1;
    let eps_t = epsilon * root_bias2;
    for (((wk, &gk), mk), vk) in w
        .iter_mut()
        .zip(g.iter())
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let grad = gk + weight_decay * *wk;
        *mk = beta1 * *mk + (1.0 - beta1) * grad;
        *vk = beta2 * *vk + (1.0 - beta2) * (grad * grad);
        *wk -= lr_t * *mk / (libm::sqrtf(*vk) + eps_t);
    }
}
