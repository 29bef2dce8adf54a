//! The crate's error type: invalid parameters are reported, never panicked on.

use core::fmt;

/// Why a loss, an optimiser constructor or a training step refused its input.
///
/// ```
/// use gradguard::{Error, Sgd};
/// assert_eq!(Sgd::new(f32::NAN).unwrap_err().same_kind(), Error::InvalidLearningRate(0.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        /// The offending label.
        label: usize,
        /// The number of classes (outputs).
        classes: usize,
    },
    /// A learning rate that is NaN, infinite, zero or negative.
    InvalidLearningRate(f32),
    /// Another hyper-parameter outside its valid range (name and value).
    InvalidHyperparameter(&'static str, f32),
    /// A binary cross-entropy target that is not in [0, 1] (or is NaN).
    TargetOutOfRange(f32),
    /// [`crate::kernels::set_backend`] asked for a backend this machine cannot run.
    BackendUnavailable(crate::kernels::Backend),
    /// A parameter or optimiser image was refused ([`crate::image::load`]); the
    /// destination is unchanged.
    Image(crate::image::ImageError),
}

impl Error {
    /// The error with its payload normalised for comparison (NaN payloads compare unequal;
    /// this maps them to 0 so tests and callers can match on the kind).
    ///
    /// ```
    /// use gradguard::Error;
    /// assert_eq!(Error::InvalidLearningRate(f32::NAN).same_kind(), Error::InvalidLearningRate(0.0));
    /// ```
    pub fn same_kind(self) -> Self {
        let clean = |v: f32| if v.is_nan() { 0.0 } else { v };
        match self {
            Error::InvalidLearningRate(v) => Error::InvalidLearningRate(clean(v)),
            Error::InvalidHyperparameter(n, v) => Error::InvalidHyperparameter(n, clean(v)),
            Error::TargetOutOfRange(v) => Error::TargetOutOfRange(clean(v)),
            e
            @ (Error::LabelOutOfRange { .. } | Error::BackendUnavailable(_) | Error::Image(_)) => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LabelOutOfRange { label, classes } => {
                write!(f, "label {label} out of range for {classes} classes")
            }
            Error::InvalidLearningRate(v) => {
                write!(f, "learning rate {v} is not a finite positive number")
            }
            Error::InvalidHyperparameter(name, v) => write!(f, "{name} = {v} is out of range"),
            Error::TargetOutOfRange(v) => write!(f, "target {v} is not in [0, 1]"),
            Error::BackendUnavailable(b) => write!(f, "the {} kernels cannot run here", b.name()),
            Error::Image(e) => write!(f, "image refused: {e}"),
        }
    }
}

impl core::error::Error for Error {}
