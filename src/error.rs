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
#[non_exhaustive]
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
    BackendUnavailable(crate::backend::Backend),
    /// A parameter or optimiser image was refused ([`crate::image::load`]); the
    /// destination is unchanged.
    Image(ImageError),
}

impl Error {
    /// The error with its payload normalised for comparison (NaN payloads compare unequal;
    /// this maps them to 0 so tests and callers can match on the kind).
    ///
    /// ```
    /// use gradguard::Error;
    /// assert_eq!(Error::InvalidLearningRate(f32::NAN).same_kind(), Error::InvalidLearningRate(0.0));
    /// ```
    #[must_use]
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

/// The image format version this crate writes and reads (`gradguard::image::VERSION`;
/// here because [`ImageError`]'s message names it).
pub(crate) const IMAGE_VERSION: u16 = 1;

/// Why an image was refused.
///
/// ```
/// use gradguard::image::{self, ImageError, NonFinite};
/// use gradguard::{Dense, Error, Layer, Zeroed};
/// let mut p = <Dense<2, 2> as Layer>::Params::ZEROED;
/// assert_eq!(
///     image::load(b"not an image, but long enough to hold a header", &mut p, NonFinite::Reject),
///     Err(Error::Image(ImageError::NotAnImage))
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ImageError {
    /// The buffer is shorter than the image: `needed` bytes, `available` given.
    TooShort {
        /// Bytes the image of this type takes.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// The buffer does not start with [`MAGIC`](crate::image::MAGIC).
    NotAnImage,
    /// A format version this crate cannot read.
    UnsupportedVersion(u16),
    /// The image holds something else (e.g. optimiser state where parameters were asked
    /// for); the header's content field is given.
    OtherContent(u16),
    /// The image is of a network of another shape: its tensor count, value count or shape
    /// signature differs from the destination's.
    OtherShape,
    /// Reserved header bytes are not zero (written by a newer format).
    ReservedBytes,
    /// The checksum does not match: the image is corrupt (or was not completely written).
    ChecksumMismatch,
    /// Value `index` (counting from 0 in the payload) is NaN or infinite, with
    /// [`NonFinite::Reject`](crate::image::NonFinite::Reject).
    NonFinite {
        /// Position of the first such value in the payload.
        index: usize,
    },
    /// Value `index` is outside the range its state allows (e.g. a negative second moment
    /// of [`Adam`](crate::Adam)).
    InvalidValue {
        /// Position of the first such value in the payload.
        index: usize,
    },
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::TooShort { needed, available } => {
                write!(f, "{available} bytes, the image takes {needed}")
            }
            ImageError::NotAnImage => write!(f, "no GGPI magic: not a gradguard image"),
            ImageError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "format version {v}; this crate reads version {IMAGE_VERSION}"
                )
            }
            ImageError::OtherContent(c) => write!(f, "it holds content {c}, not what was asked"),
            ImageError::OtherShape => write!(f, "it is of a network of another shape"),
            ImageError::ReservedBytes => write!(f, "reserved header bytes are set"),
            ImageError::ChecksumMismatch => write!(f, "checksum mismatch: the image is corrupt"),
            ImageError::NonFinite { index } => write!(f, "value {index} is NaN or infinite"),
            ImageError::InvalidValue { index } => write!(f, "value {index} is out of range"),
        }
    }
}
