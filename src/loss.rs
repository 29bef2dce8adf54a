//! Losses: each returns the mean loss over the batch and writes ∂loss/∂output.
//!
//! ```
//! use gradguard::{Loss, SoftmaxCrossEntropy};
//! let mut grad = [[0.0; 3]; 1];
//! let loss = SoftmaxCrossEntropy.loss_and_gradient(&[[0.0, 0.0, 0.0]], &[2], &mut grad).unwrap();
//! assert!((loss - 3.0_f32.ln()).abs() < 1e-6);
//! assert!((grad[0][2] - (1.0 / 3.0 - 1.0)).abs() < 1e-7);
//! ```

use crate::error::Error;
use crate::kernels::{self, Isa};

/// A loss over rows of `N` outputs.
///
/// Validates every target before writing anything: on `Err` the gradient is untouched.
/// NaN or infinite outputs are not errors: they propagate into the loss and gradient, where
/// the caller (or the health report) sees them.
///
/// ```
/// use gradguard::{Loss, MeanSquaredError};
/// let mut g = [[0.0; 2]; 1];
/// let l = MeanSquaredError.loss_and_gradient(&[[1.0, 2.0]], &[[0.0, 2.0]], &mut g).unwrap();
/// assert_eq!((l, g), (0.5, [[1.0, 0.0]]));
/// ```
pub trait Loss<const N: usize> {
    /// What one sample is compared with (a class label, a target row, …).
    type Target: Copy;

    /// Mean loss over the batch, and `grad = ∂(mean loss)/∂output`.
    ///
    /// # Errors
    /// [`Error::LabelOutOfRange`] (a class label ≥ N) or [`Error::TargetOutOfRange`] (a binary
    /// target outside [0, 1]); `grad` may then be partly written.
    fn loss_and_gradient<const B: usize>(
        &self,
        output: &[[f32; N]; B],
        targets: &[Self::Target; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error>;

    /// [`Loss::loss_and_gradient`] with the kernels of `isa`: what the training steps call,
    /// inside the pass they compiled for one instruction set. The default ignores `isa`
    /// (losses whose row kernels are scalar); a loss that uses dispatched kernels (softmax
    /// cross-entropy's exponentials) overrides it and makes `loss_and_gradient` choose the
    /// backend once.
    ///
    /// ```
    /// use gradguard::{kernels::Scalar, Loss, SoftmaxCrossEntropy};
    /// let mut g = [[0.0; 2]; 1];
    /// let l = SoftmaxCrossEntropy.loss_and_gradient_on(Scalar::new(), &[[0.0, 0.0]], &[1], &mut g)?;
    /// assert_eq!(g, [[0.5, -0.5]]);
    /// assert!((l - 2f32.ln()).abs() < 1e-7);
    /// # Ok::<(), gradguard::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Loss::loss_and_gradient`].
    #[inline]
    fn loss_and_gradient_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        output: &[[f32; N]; B],
        targets: &[Self::Target; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error> {
        let _ = isa;
        self.loss_and_gradient(output, targets, grad)
    }
}

/// Applies an elementwise row loss kernel `(output, target, grad, scale) -> Σ loss` to every
/// row with scale 1/(B·N) and returns the mean over all elements.
fn mean_of_rows<const N: usize, const B: usize>(
    output: &[[f32; N]; B],
    targets: &[[f32; N]; B],
    grad: &mut [[f32; N]; B],
    row: fn(&[f32], &[f32], &mut [f32], f32) -> f32,
) -> f32 {
    let scale = 1.0 / (B * N).max(1) as f32;
    let mut total = 0.0_f32;
    for ((y, t), g) in output.iter().zip(targets.iter()).zip(grad.iter_mut()) {
        total += row(y, t, g, scale);
    }
    total * scale
}

/// Mean squared error over all `B·N` elements: `L = Σ (y − t)² / (B·N)`.
///
/// ```
/// use gradguard::{Loss, MeanSquaredError};
/// let mut g = [[0.0; 1]; 2];
/// let l = MeanSquaredError.loss_and_gradient(&[[3.0], [0.0]], &[[1.0], [0.0]], &mut g).unwrap();
/// assert_eq!((l, g), (2.0, [[2.0], [0.0]]));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeanSquaredError;

impl<const N: usize> Loss<N> for MeanSquaredError {
    type Target = [f32; N];

    fn loss_and_gradient<const B: usize>(
        &self,
        output: &[[f32; N]; B],
        targets: &[[f32; N]; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error> {
        Ok(mean_of_rows(
            output,
            targets,
            grad,
            kernels::squared_error_row,
        ))
    }
}

/// Softmax followed by cross-entropy with integer class labels, fused and stable.
///
/// Per sample `ℓ = ln Σ_j e^(z_j − m) − (z_label − m)` with m = max z (no overflow for any
/// finite logits), mean over the batch; gradient `(softmax(z) − onehot(label)) / B`.
///
/// ```
/// use gradguard::{Error, Loss, SoftmaxCrossEntropy};
/// let mut g = [[0.0; 2]; 1];
/// let err = SoftmaxCrossEntropy.loss_and_gradient(&[[0.0, 1.0]], &[5], &mut g);
/// assert_eq!(err, Err(Error::LabelOutOfRange { label: 5, classes: 2 }));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftmaxCrossEntropy;

impl<const N: usize> Loss<N> for SoftmaxCrossEntropy {
    type Target = usize;

    fn loss_and_gradient<const B: usize>(
        &self,
        output: &[[f32; N]; B],
        targets: &[usize; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error> {
        // The backend is chosen once for the batch, not per row.
        kernels::with_isa!(k => self.loss_and_gradient_on(k, output, targets, grad))
    }

    fn loss_and_gradient_on<K: Isa, const B: usize>(
        &self,
        isa: K,
        output: &[[f32; N]; B],
        targets: &[usize; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error> {
        if let Some(&label) = targets.iter().find(|&&t| t >= N) {
            return Err(Error::LabelOutOfRange { label, classes: N });
        }
        let scale = 1.0 / B.max(1) as f32;
        let mut total = 0.0_f32;
        for ((z, &label), g) in output.iter().zip(targets.iter()).zip(grad.iter_mut()) {
            total += kernels::softmax_cross_entropy_row_on(isa, z, label, g, scale);
        }
        Ok(total * scale)
    }
}

/// Binary cross-entropy on logits, elementwise, mean over all `B·N` elements:
/// `ℓ = max(z, 0) − z·t + ln(1 + e^−|z|)`, gradient `(σ(z) − t) / (B·N)` computed without
/// a false zero for confident predictions (see
/// [`kernels::binary_cross_entropy_with_logits_row`]). Targets must be in [0, 1].
///
/// ```
/// use gradguard::{BinaryCrossEntropyWithLogits as Bce, Loss};
/// let mut g = [[0.0; 1]; 1];
/// let l = Bce.loss_and_gradient(&[[0.0]], &[[1.0]], &mut g).unwrap();
/// assert!((l - 2.0_f32.ln()).abs() < 1e-7 && g == [[-0.5]]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BinaryCrossEntropyWithLogits;

impl<const N: usize> Loss<N> for BinaryCrossEntropyWithLogits {
    type Target = [f32; N];

    fn loss_and_gradient<const B: usize>(
        &self,
        output: &[[f32; N]; B],
        targets: &[[f32; N]; B],
        grad: &mut [[f32; N]; B],
    ) -> Result<f32, Error> {
        if let Some(&bad) = targets.iter().flatten().find(|t| !(0.0..=1.0).contains(*t)) {
            return Err(Error::TargetOutOfRange(bad));
        }
        Ok(mean_of_rows(
            output,
            targets,
            grad,
            kernels::binary_cross_entropy_with_logits_row,
        ))
    }
}
