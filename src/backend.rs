//! The names of the kernel sets (instruction sets): at the bottom of the crate, so that
//! [`crate::Error`] can name one without depending on the kernels. Detection, selection and
//! dispatch are in `kernels::dispatch`.

/// A set of kernels for one instruction set.
///
/// ```
/// use gradguard::kernels::{backend, Backend};
/// assert!(backend().is_available());
/// assert!(Backend::Scalar.is_available());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[non_exhaustive]
pub enum Backend {
    /// Portable scalar code: the reference, and the microcontroller path.
    Scalar = 1,
    /// x86_64 SSE2, 4 lanes (every x86_64 CPU).
    Sse2 = 2,
    /// x86_64 AVX2 with FMA, 8 lanes.
    Avx2 = 3,
    /// x86_64 AVX-512F, 16 lanes.
    Avx512 = 4,
    /// aarch64 NEON, 4 lanes.
    Neon = 5,
    /// wasm32 simd128, 4 lanes.
    Simd128 = 6,
}

impl Backend {
    /// Every backend, best last.
    ///
    /// ```
    /// assert_eq!(gradguard::kernels::Backend::ALL.len(), 6);
    /// ```
    pub const ALL: &'static [Backend] = &[
        Backend::Scalar,
        Backend::Sse2,
        Backend::Simd128,
        Backend::Neon,
        Backend::Avx2,
        Backend::Avx512,
    ];

    /// The name used by `GRADGUARD_BACKEND` and in reports.
    ///
    /// ```
    /// assert_eq!(gradguard::kernels::Backend::Avx2.name(), "avx2");
    /// ```
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Sse2 => "sse2",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
            Backend::Simd128 => "simd128",
        }
    }

    /// The backend called `name` (as [`Backend::name`] spells it).
    ///
    /// ```
    /// use gradguard::kernels::Backend;
    /// assert_eq!(Backend::from_name("avx512"), Some(Backend::Avx512));
    /// assert_eq!(Backend::from_name("mmx"), None);
    /// ```
    #[must_use]
    pub const fn from_name(name: &str) -> Option<Backend> {
        let mut rest: &[Backend] = Backend::ALL;
        while let Some((&b, tail)) = rest.split_first() {
            if bytes_equal(b.name().as_bytes(), name.as_bytes()) {
                return Some(b);
            }
            rest = tail;
        }
        None
    }
}

const fn bytes_equal(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        match (a.split_first(), b.split_first()) {
            (None, None) => return true,
            (Some((x, a_rest)), Some((y, b_rest))) if *x == *y => (a, b) = (a_rest, b_rest),
            _ => return false,
        }
    }
}
