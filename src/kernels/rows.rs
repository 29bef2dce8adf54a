//! Row kernels: softmax, its backward, and the fused losses. The exponentials run on the
//! active backend (bit-identical everywhere); the short reductions over a row are scalar, in
//! index order, so these kernels give the same bits on every backend.

use super::Isa;

/// Writes `a[k] = e^(z[k]−m)` with m = max z and returns `(m, Σ_k a[k])`, the sum
/// compensated (Neumaier) so it is correct to about 1 ulp for any row length.
#[inline]
fn exp_shifted_row<K: Isa>(isa: K, z: &[f32], a: &mut [f32]) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    for &v in z {
        // NaN is skipped here; it reaches the sum below and poisons the row.
        if v > m {
            m = v;
        }
    }
    isa.exp_shifted(z, m, a);
    let (mut sum, mut compensation) = (0.0_f32, 0.0_f32);
    for &e in a.iter().take(z.len()) {
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
    super::with_isa!(k => softmax_row_on(k, z, a));
}

/// [`softmax_row`] with the kernels of `isa` (the same bits on every instruction set).
///
/// ```
/// use gradguard::kernels::{softmax_row_on, Scalar};
/// let mut a = [0.0; 2];
/// softmax_row_on(Scalar::new(), &[1.0, 1.0], &mut a);
/// assert_eq!(a, [0.5, 0.5]);
/// ```
#[inline]
pub fn softmax_row_on<K: Isa>(isa: K, z: &[f32], a: &mut [f32]) {
    let (_, sum) = exp_shifted_row(isa, z, a);
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
    super::with_isa!(k => softmax_cross_entropy_row_on(k, z, label, g, scale))
}

/// [`softmax_cross_entropy_row`] with the kernels of `isa` (the same bits on every
/// instruction set).
///
/// ```
/// use gradguard::kernels::{softmax_cross_entropy_row_on, Scalar};
/// let mut g = [0.0; 2];
/// let loss = softmax_cross_entropy_row_on(Scalar::new(), &[0.0, 0.0], 0, &mut g, 1.0);
/// assert_eq!(g, [-0.5, 0.5]);
/// assert!((loss - 2.0_f32.ln()).abs() < 1e-7);
/// ```
#[inline]
pub fn softmax_cross_entropy_row_on<K: Isa>(
    isa: K,
    z: &[f32],
    label: usize,
    g: &mut [f32],
    scale: f32,
) -> f32 {
    let (m, sum) = exp_shifted_row(isa, z, g);
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
