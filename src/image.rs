//! Parameter images: a network's parameters (or an optimiser's state, to resume training)
//! as a fixed-size, checksummed, little-endian byte image, for flash or a file.
//!
//! * [`save`] writes into a caller's `&mut [u8]`; [`load`] reads from `&[u8]` **in place**
//!   into existing (e.g. `static`) state, so no value of the state passes through the stack.
//! * The size is a constant per type, [`Persistent::IMAGE_BYTES`], so a firmware can reserve
//!   its flash sector at compile time, and an image in flash (`include_bytes!`, a `static`
//!   byte array) loads as it is: buffers of any alignment work.
//! * [`load`] verifies everything before it writes anything: on any error the destination
//!   is unchanged. Errors are [`Error::Image`] values, never panics.
//!
//! # Format (version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `GGPI` |
//! | 4..6 | format version, `u16` = 1 |
//! | 6..8 | content, `u16`: 1 parameters, 2 [`Momentum`](crate::Momentum) state, 3 [`Adam`](crate::Adam) state |
//! | 8..12 | number of tensors, `u32` |
//! | 12..16 | number of `f32` values in the payload, `u32` |
//! | 16..20 | shape signature, `u32`: CRC-32 of every tensor's (layer, kind, rows, cols) as four `u32`s, kind 0 = weight, 1 = bias |
//! | 20..28 | reserved, zero |
//! | 28..32 | CRC-32 (IEEE 802.3, as zlib's `crc32`) of bytes 0..28 and the payload |
//! | 32.. | payload: the values as little-endian `f32`, tensor after tensor in [`Parameters::tensor`] order, each row-major |
//!
//! Every integer is little-endian. Optimiser images start with their hyper-parameters and
//! state scalars (see [`Persistent`] on [`Momentum`](crate::Momentum) and
//! [`Adam`](crate::Adam)), then their per-parameter tensors. Bytes after the image are
//! ignored, so a whole flash sector can be passed.
//!
//! ```
//! use gradguard::image::{self, NonFinite, Persistent};
//! use gradguard::{Dense, Layer, Relu, Seq, Zeroed};
//!
//! type Net = Seq![Dense<4, 3, Relu>, Dense<3, 2>];
//! type Params = <Net as Layer>::Params;
//! const BYTES: usize = <Params as Persistent>::IMAGE_BYTES; // 32 + 4 · (15 + 8) = 124
//!
//! let mut trained = Params::ZEROED;
//! trained.first.weights[0][0] = 0.5;
//! let mut flash = [0xFFu8; 256]; // an erased flash sector
//! let written = image::save(&trained, &mut flash)?;
//! assert_eq!(written, BYTES);
//!
//! // After a reset: load into zeroed parameters (a `static` on a device).
//! let mut params = Params::ZEROED;
//! image::load(&flash, &mut params, NonFinite::Reject)?;
//! assert_eq!(params, trained);
//!
//! // A network of another shape is refused, and left as it was.
//! type Other = <Dense<4, 2> as Layer>::Params;
//! let mut other = Other::ZEROED;
//! assert!(image::load(&flash, &mut other, NonFinite::Reject).is_err());
//! assert_eq!(other, Other::ZEROED);
//! # Ok::<(), gradguard::Error>(())
//! ```
// Every length and offset here comes from untrusted input or from type-level constants:
// all arithmetic is checked or provably in range.
#![deny(clippy::arithmetic_side_effects)]

pub use crate::error::ImageError;
use crate::{Error, Parameters, TensorInfo, TensorKind};

/// Bytes of the header in front of the values.
pub const HEADER_BYTES: usize = 32;
/// The first four bytes of every image.
pub const MAGIC: [u8; 4] = *b"GGPI";
/// The format version [`save`] writes and [`load`] reads.
pub const VERSION: u16 = crate::error::IMAGE_VERSION;

/// What an image holds (the header's content field).
///
/// ```
/// use gradguard::image::{Content, Persistent};
/// use gradguard::{Dense, Layer, Momentum};
/// type P = <Dense<2, 2> as Layer>::Params;
/// assert_eq!(<P as Persistent>::CONTENT, Content::Parameters);
/// assert_eq!(<Momentum<P> as Persistent>::CONTENT, Content::Momentum);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
pub enum Content {
    /// A network's parameters.
    Parameters = 1,
    /// The state of a [`Momentum`](crate::Momentum) optimiser.
    Momentum = 2,
    /// The state of an [`Adam`](crate::Adam) optimiser.
    Adam = 3,
}

/// How [`load`] and [`verify`] treat NaN and ±∞ among the values.
///
/// ```
/// assert_ne!(gradguard::image::NonFinite::Reject, gradguard::image::NonFinite::Accept);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NonFinite {
    /// An image with a NaN or infinite value is an error ([`ImageError::NonFinite`]).
    Reject,
    /// Load NaN and ±∞ as they are (e.g. to inspect a diverged network).
    Accept,
}

/// State that has an image: every [`Parameters`] type, and the optimisers' state
/// ([`Momentum`](crate::Momentum), [`Adam`](crate::Adam)) so that training can resume.
///
/// The state is a sequence of `f32` slices, written in order. An implementation for a new
/// kind of state (e.g. a new optimiser) lists its slices and checks its leading scalars.
///
/// ```
/// use gradguard::image::Persistent;
/// use gradguard::{Dense, Layer};
/// type P = <Dense<64, 32> as Layer>::Params;
/// // A flash sector reserved at compile time.
/// static IMAGE_SECTOR: [u8; <P as Persistent>::IMAGE_BYTES] = [0; <P as Persistent>::IMAGE_BYTES];
/// assert_eq!(IMAGE_SECTOR.len(), 32 + 4 * (64 * 32 + 32));
/// ```
pub trait Persistent {
    /// What the image holds.
    const CONTENT: Content;
    /// Number of slices [`Persistent::slice`] returns.
    const SLICES: usize;
    /// Number of `f32` values in all slices together.
    const VALUES: usize;
    /// Number of leading values that are hyper-parameters or state scalars, checked by
    /// [`Persistent::check_scalars`] before anything is loaded (at most 8).
    const LEADING_SCALARS: usize;
    /// Bytes of this type's image: [`HEADER_BYTES`] + 4 · [`Persistent::VALUES`].
    // Evaluated at compile time: an overflow is a compile error, not a wrap.
    #[allow(clippy::arithmetic_side_effects)]
    const IMAGE_BYTES: usize = HEADER_BYTES + 4 * Self::VALUES;
    /// Number of parameter tensors the state is shaped after (the header's tensor count).
    const PARAMETER_TENSORS: usize;
    /// The shape signature: CRC-32 of the parameter tensors' (layer, kind, rows, cols).
    fn signature() -> u32;
    /// Slice `i` of the state, in image order (empty if `i >= SLICES`).
    fn slice(&self, i: usize) -> &[f32];
    /// Slice `i` of the state, mutable (empty if `i >= SLICES`).
    fn slice_mut(&mut self, i: usize) -> &mut [f32];
    /// Checks the leading `LEADING_SCALARS` values of an image before any of it is loaded.
    ///
    /// # Errors
    /// [`Error::Image`] ([`ImageError::InvalidValue`] with the index) if a scalar is out of
    /// the state's range.
    fn check_scalars(scalars: &[f32]) -> Result<(), Error>;
    /// Whether value `index` of the payload may be `v` (checked before anything is loaded;
    /// NaN and ±∞ are [`NonFinite`]'s business). Every value by default.
    #[must_use]
    fn value_allowed(index: usize, v: f32) -> bool {
        let _ = (index, v);
        true
    }
}

impl<P: Parameters> Persistent for P {
    const CONTENT: Content = Content::Parameters;
    const SLICES: usize = P::TENSORS;
    const VALUES: usize = P::SCALARS;
    const LEADING_SCALARS: usize = 0;
    const PARAMETER_TENSORS: usize = P::TENSORS;
    fn signature() -> u32 {
        shape_signature::<P>()
    }
    fn slice(&self, i: usize) -> &[f32] {
        self.tensor(i)
    }
    fn slice_mut(&mut self, i: usize) -> &mut [f32] {
        self.tensor_mut(i)
    }
    fn check_scalars(_scalars: &[f32]) -> Result<(), Error> {
        Ok(())
    }
}

/// CRC-32 of the (layer, kind, rows, cols) of every tensor of `P`, as little-endian `u32`s
/// (kind 0 = weight, 1 = bias, 2 = scale, 3 = running mean, 4 = running variance; values
/// above `u32::MAX` saturate).
///
/// ```
/// use gradguard::{image::shape_signature, Dense, Layer};
/// let a = shape_signature::<<Dense<3, 2> as Layer>::Params>();
/// assert_ne!(a, shape_signature::<<Dense<2, 3> as Layer>::Params>());
/// ```
pub fn shape_signature<P: Parameters>() -> u32 {
    signature_of((0..P::TENSORS).filter_map(P::tensor_info))
}

/// The shape signature of tensors described at run time (host tools).
pub(crate) fn signature_of(tensors: impl Iterator<Item = TensorInfo>) -> u32 {
    let mut crc = Crc32::new();
    let word = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
    for t in tensors {
        let kind = match t.kind {
            TensorKind::Weight => 0,
            TensorKind::Bias => 1,
            TensorKind::Scale => 2,
            TensorKind::RunningMean => 3,
            TensorKind::RunningVariance => 4,
        };
        for field in [t.layer, kind, t.rows, t.cols] {
            crc.update(&word(field));
        }
    }
    crc.finish()
}

/// What the header of an image says besides its checksum: the content, the counts and the
/// shape signature. Known at compile time for a [`Persistent`] type, or built at run time
/// by host tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) content: Content,
    pub(crate) tensors: usize,
    pub(crate) values: usize,
    pub(crate) signature: u32,
}

impl Layout {
    fn of<S: Persistent>() -> Self {
        Layout {
            content: S::CONTENT,
            tensors: S::PARAMETER_TENSORS,
            values: S::VALUES,
            signature: S::signature(),
        }
    }

    /// Bytes of the image (`None` if that overflows).
    pub(crate) fn image_bytes(&self) -> Option<usize> {
        self.values.checked_mul(4)?.checked_add(HEADER_BYTES)
    }

    /// The header with a zero checksum field.
    fn header(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        let count = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
        let fields: [(usize, &[u8]); 6] = [
            (0, &MAGIC),
            (4, &VERSION.to_le_bytes()),
            (6, &(self.content as u16).to_le_bytes()),
            (8, &count(self.tensors)),
            (12, &count(self.values)),
            (16, &self.signature.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            for (d, &b) in h.iter_mut().skip(at).zip(bytes) {
                *d = b;
            }
        }
        h
    }

    /// Writes the image to the start of `out`; `fill` writes the payload (`self.values`
    /// little-endian f32s).
    pub(crate) fn write(
        &self,
        out: &mut [u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, Error> {
        let needed = self.image_bytes().unwrap_or(usize::MAX);
        let available = out.len();
        let too_short = Error::Image(ImageError::TooShort { needed, available });
        let Some(out) = out.get_mut(..needed) else {
            return Err(too_short);
        };
        // (Checked, though `needed` covers the header: no panic path, so no source path in
        // a firmware's flash either.)
        let Some((header, payload)) = out.split_at_mut_checked(HEADER_BYTES) else {
            return Err(too_short);
        };
        fill(payload);
        header.copy_from_slice(&self.header());
        let crc = image_checksum(header, payload);
        if let Some(field) = header.get_mut(28..32) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        Ok(needed)
    }

    /// Verifies `image` against this layout and returns its payload: magic, version,
    /// content, counts and signature, reserved bytes, length, checksum, non-finite values
    /// per `non_finite`, and `allowed(index, value)` for every value.
    pub(crate) fn check<'a>(
        &self,
        image: &'a [u8],
        non_finite: NonFinite,
        allowed: impl Fn(usize, f32) -> bool,
    ) -> Result<&'a [u8], Error> {
        let fail = |e| Err(Error::Image(e));
        let needed = self.image_bytes().unwrap_or(usize::MAX);
        let Some(header) = image.get(..HEADER_BYTES) else {
            return fail(ImageError::TooShort {
                needed,
                available: image.len(),
            });
        };
        if header.get(..4) != Some(&MAGIC[..]) {
            return fail(ImageError::NotAnImage);
        }
        let version = u16_at(header, 4);
        if version != VERSION {
            return fail(ImageError::UnsupportedVersion(version));
        }
        let content = u16_at(header, 6);
        if content != self.content as u16 {
            return fail(ImageError::OtherContent(content));
        }
        if header.get(8..20) != self.header().get(8..20) {
            return fail(ImageError::OtherShape);
        }
        if header
            .get(20..28)
            .is_some_and(|r| r.iter().any(|&b| b != 0))
        {
            return fail(ImageError::ReservedBytes);
        }
        let Some(payload) = image.get(HEADER_BYTES..needed) else {
            return fail(ImageError::TooShort {
                needed,
                available: image.len(),
            });
        };
        if image_checksum(header, payload) != u32_at(header, 28) {
            return fail(ImageError::ChecksumMismatch);
        }
        for (index, bytes) in payload.chunks_exact(4).enumerate() {
            let v = f32_at(bytes);
            if non_finite == NonFinite::Reject && !v.is_finite() {
                return fail(ImageError::NonFinite { index });
            }
            if !allowed(index, v) {
                return fail(ImageError::InvalidValue { index });
            }
        }
        Ok(payload)
    }
}

/// Writes the image of `state` to the start of `out` and returns its length,
/// [`Persistent::IMAGE_BYTES`]. Bytes of `out` after the image are left as they are.
///
/// Errors: [`ImageError::TooShort`] if `out` is shorter than the image (then `out` is
/// unchanged).
///
/// ```
/// use gradguard::{image, Dense, Layer, Zeroed};
/// let p = <Dense<2, 1> as Layer>::Params::ZEROED;
/// let mut out = [0u8; 64];
/// assert_eq!(image::save(&p, &mut out)?, 32 + 4 * 3);
/// assert_eq!(&out[..4], b"GGPI");
/// assert!(image::save(&p, &mut out[..40]).is_err());
/// # Ok::<(), gradguard::Error>(())
/// ```
///
/// # Errors
/// [`Error::Image`] ([`ImageError::TooShort`]) if `out` is shorter than
/// [`Persistent::IMAGE_BYTES`]; `out` is then unchanged.
pub fn save<S: Persistent>(state: &S, out: &mut [u8]) -> Result<usize, Error> {
    Layout::of::<S>().write(out, |payload| {
        let mut values = payload.chunks_exact_mut(4);
        for i in 0..S::SLICES {
            for (&v, bytes) in state.slice(i).iter().zip(values.by_ref()) {
                bytes.copy_from_slice(&v.to_le_bytes());
            }
        }
    })
}

/// Checks that `image` is a complete, intact image of state shaped like `S`, without
/// loading it: what [`load`] checks before it writes.
///
/// ```
/// use gradguard::image::{self, ImageError, NonFinite};
/// use gradguard::{Dense, Error, Layer, Zeroed};
/// type P = <Dense<2, 2> as Layer>::Params;
/// let mut buf = [0u8; 64];
/// image::save(&P::ZEROED, &mut buf)?;
/// image::verify::<P>(&buf, NonFinite::Reject)?;
/// buf[40] ^= 1; // one flipped bit
/// assert_eq!(image::verify::<P>(&buf, NonFinite::Reject), Err(Error::Image(ImageError::ChecksumMismatch)));
/// # Ok::<(), gradguard::Error>(())
/// ```
///
/// # Errors
/// [`Error::Image`] with the first problem found: too short, no magic, another version,
/// content or shape, reserved bytes set, a checksum mismatch, a non-finite value (with
/// [`NonFinite::Reject`]) or a scalar out of range.
pub fn verify<S: Persistent>(image: &[u8], non_finite: NonFinite) -> Result<(), Error> {
    checked_payload::<S>(image, non_finite).map(|_| ())
}

/// Loads `image` into `state` in place. Everything is verified first (magic, version,
/// content, shape, length, checksum, non-finite values per `non_finite`, the optimisers'
/// hyper-parameters): on any error `state` is unchanged. `image` may have any alignment
/// and may be longer than the image (e.g. a whole flash sector).
///
/// ```
/// use gradguard::image::{self, NonFinite};
/// use gradguard::{Dense, Layer, Zeroed};
/// type P = <Dense<2, 2> as Layer>::Params;
/// let mut p = P::ZEROED;
/// p.bias = [1.0, f32::NAN];
/// let mut buf = [0u8; 1 + 32 + 4 * 6];
/// image::save(&p, &mut buf[1..])?; // at an odd address
/// let mut q = P::ZEROED;
/// assert!(image::load(&buf[1..], &mut q, NonFinite::Reject).is_err());
/// assert_eq!(q, P::ZEROED); // unchanged
/// image::load(&buf[1..], &mut q, NonFinite::Accept)?;
/// assert!(q.bias[1].is_nan());
/// # Ok::<(), gradguard::Error>(())
/// ```
///
/// # Errors
/// As for [`verify`]; `state` is then unchanged.
pub fn load<S: Persistent>(
    image: &[u8],
    state: &mut S,
    non_finite: NonFinite,
) -> Result<(), Error> {
    let payload = checked_payload::<S>(image, non_finite)?;
    let mut values = payload.chunks_exact(4);
    for i in 0..S::SLICES {
        for (v, bytes) in state.slice_mut(i).iter_mut().zip(values.by_ref()) {
            *v = f32_at(bytes);
        }
    }
    Ok(())
}

/// CRC-32 of the header's first 28 bytes and the payload.
fn image_checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(header.get(..28).unwrap_or(header));
    crc.update(payload);
    crc.finish()
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    for (d, s) in b.iter_mut().zip(bytes.iter().skip(at)) {
        *d = *s;
    }
    u16::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(bytes.iter().skip(at)) {
        *d = *s;
    }
    u32::from_le_bytes(b)
}

pub(crate) fn f32_at(bytes: &[u8]) -> f32 {
    f32::from_bits(u32_at(bytes, 0))
}

/// Verifies `image` as an image of `S` and returns its payload.
fn checked_payload<S: Persistent>(image: &[u8], non_finite: NonFinite) -> Result<&[u8], Error> {
    let payload = Layout::of::<S>().check(image, non_finite, S::value_allowed)?;
    let mut scalars = [0.0f32; 8];
    let n = S::LEADING_SCALARS.min(scalars.len());
    for (s, b) in scalars.iter_mut().zip(payload.chunks_exact(4)).take(n) {
        *s = f32_at(b);
    }
    S::check_scalars(scalars.get(..n).unwrap_or(&[]))?;
    Ok(payload)
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320; zlib's `crc32`), four bits at a
/// time from a 16-entry table: 64 bytes of flash instead of a 1 KiB byte table.
struct Crc32(u32);

/// One bit of the reflected CRC register shifted out.
const fn crc_bit(c: u32) -> u32 {
    if c & 1 != 0 {
        (c >> 1) ^ 0xEDB8_8320
    } else {
        c >> 1
    }
}

/// Table entry `i`: the CRC register after shifting out the four bits of `i`.
const fn crc_nibble(i: u32) -> u32 {
    crc_bit(crc_bit(crc_bit(crc_bit(i))))
}

#[rustfmt::skip]
const CRC_NIBBLES: [u32; 16] = [
    crc_nibble(0), crc_nibble(1), crc_nibble(2), crc_nibble(3),
    crc_nibble(4), crc_nibble(5), crc_nibble(6), crc_nibble(7),
    crc_nibble(8), crc_nibble(9), crc_nibble(10), crc_nibble(11),
    crc_nibble(12), crc_nibble(13), crc_nibble(14), crc_nibble(15),
];

/// The table entry for the low four bits of `c`.
fn nibble_entry(c: u32) -> u32 {
    // (c & 15) < 16: always in range.
    CRC_NIBBLES.get((c & 15) as usize).copied().unwrap_or(0)
}

impl Crc32 {
    fn new() -> Self {
        Crc32(!0)
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c ^= u32::from(b);
            c = (c >> 4) ^ nibble_entry(c);
            c = (c >> 4) ^ nibble_entry(c);
        }
        self.0 = c;
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 of `bytes` as the image format computes it (zlib's `crc32`), for tools that
/// write images themselves.
///
/// ```
/// assert_eq!(gradguard::image::crc32(b"123456789"), 0xCBF4_3926);
/// ```
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}
