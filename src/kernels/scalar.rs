//! Portable scalar kernels: the reference implementation and the microcontroller path.
//!
//! The order of every floating-point operation here is part of the contract (documented per
//! function), because other backends are tested against it. No fused multiply-add is used:
//! `libm::fmaf` is software on Cortex-M4 (≈ 280 instructions a call), and `a * b + c` rounds
//! twice on every target alike.

use super::GradMode;

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
        for ((wo, bo), zo) in w.iter().zip(b.iter()).zip(zs.iter_mut()) {
            let mut acc = 0.0_f32;
            for (wi, xi) in wo.iter().zip(xs.iter()) {
                acc += wi * xi;
            }
            *zo = acc + bo;
        }
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
    for (dzs, dxs) in dz.iter().zip(dx.iter_mut()) {
        *dxs = [0.0; IN];
        for (wo, g) in w.iter().zip(dzs.iter()) {
            for (d, wi) in dxs.iter_mut().zip(wo.iter()) {
                *d += g * wi;
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
    if mode == GradMode::Overwrite {
        *dw = [[0.0; IN]; OUT];
        *db = [0.0; OUT];
    }
    for (dzs, xs) in dz.iter().zip(x.iter()) {
        for ((dwo, dbo), g) in dw.iter_mut().zip(db.iter_mut()).zip(dzs.iter()) {
            *dbo += g;
            for (d, xi) in dwo.iter_mut().zip(xs.iter()) {
                *d += g * xi;
            }
        }
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
