//! Which backend runs: detection without std, a cached choice and an override (the tokens
//! that prove a choice, and the kernels' wrappers, are in `kernels::isa`).
//!
//! * x86_64: CPUID leaves 1 and 7 say what the CPU has, XGETBV says whether the OS saves
//!   the AVX / AVX-512 register state; read once, cached in an [`AtomicU8`]. When the crate
//!   is compiled with the features enabled (`-C target-feature=+avx512f`, …), the check is
//!   still made but the compiler knows the answer.
//! * aarch64: NEON is baseline. wasm32: simd128 when compiled with `+simd128`.
//! * Everything else (Cortex-M, RISC-V, soft-float targets such as `x86_64-unknown-none`,
//!   which has no SSE): the scalar kernels only.
//!
//! The environment variable `GRADGUARD_BACKEND` (read at **build** time, like
//! matrixmultiply's `MMTEST_FEATURE`) selects the initial backend by name — `scalar`,
//! `sse2`, `avx2`, `avx512`, `neon`, `simd128` — so CI can run the whole test suite once per
//! backend; [`set_backend`] changes it at run time.

use core::sync::atomic::{AtomicU8, Ordering};

/// True if this build has vector backends (x86_64 SSE2, aarch64 NEON, wasm32 simd128); a
/// build without them (microcontrollers, soft-float targets) runs the scalar kernels only.
pub(crate) const VECTOR_BACKENDS: bool = cfg!(gradguard_simd);

pub use crate::backend::Backend;
use crate::error::Error;

impl Backend {
    /// The fastest backend this machine can run.
    ///
    /// ```
    /// assert!(gradguard::kernels::Backend::best().is_available());
    /// ```
    #[must_use]
    pub fn best() -> Backend {
        Backend::available().last().unwrap_or(Backend::Scalar)
    }

    /// The backends this machine can run, best last (always at least [`Backend::Scalar`]).
    ///
    /// ```
    /// use gradguard::kernels::Backend;
    /// assert_eq!(Backend::available().next(), Some(Backend::Scalar));
    /// ```
    pub fn available() -> impl Iterator<Item = Backend> {
        Backend::ALL.iter().copied().filter(|b| b.is_available())
    }
}

/// `is_available`, `fuses_multiply_add` and `from_u8` from `vector_backends!`'s list.
macro_rules! backend_queries {
    (() $($(#[$doc:meta])* $name:ident = $value:literal, $text:literal, [$cfg:meta]
        available($available:expr), fma($fma:expr), $how:ident $arguments:tt;)*) => {
        impl Backend {
            /// Whether this machine can run the backend (and this build contains it).
            ///
            /// ```
            /// use gradguard::kernels::Backend;
            /// assert!(Backend::Scalar.is_available());
            /// assert_eq!(Backend::Neon.is_available(), cfg!(all(target_arch = "aarch64", target_feature = "neon")));
            /// ```
            #[must_use]
            pub fn is_available(self) -> bool {
                match self {
                    Backend::Scalar => true,
                    $(Backend::$name => $available,)*
                }
            }

            /// Whether the backend's matrix kernels fuse multiply-adds (AVX2+FMA, AVX-512F,
            /// NEON), so that dX and dW differ from the scalar reference within
            /// [`matrix_error_bound`](super::matrix_error_bound) instead of matching it bit
            /// for bit. `Scalar` fuses only in a build for a Cortex-M with Helium (MVE
            /// floating point, e.g. `-C target-cpu=cortex-m55`): there its matrix products
            /// run as MVE code, whose whole blocks fuse each multiply-add in the reference
            /// order (the forward's included), while the remainders (an odd last row,
            /// columns past the last block of eight) take the portable loop.
            ///
            /// ```
            /// use gradguard::kernels::Backend;
            /// assert!(Backend::Avx512.fuses_multiply_add() && !Backend::Sse2.fuses_multiply_add());
            /// ```
            #[must_use]
            pub const fn fuses_multiply_add(self) -> bool {
                match self {
                    Backend::Scalar => cfg!(gradguard_mve),
                    $(Backend::$name => $fma,)*
                }
            }

            const fn from_u8(v: u8) -> Option<Backend> {
                match v {
                    1 => Some(Backend::Scalar),
                    $($value => Some(Backend::$name),)*
                    _ => None,
                }
            }
        }
    };
}

crate::backend::vector_backends!(backend_queries!());

/// The backend named by `GRADGUARD_BACKEND` at build time, if any (an unknown name is a
/// build error, so a typo in CI cannot silently test the default).
// The panic runs in const evaluation only: an unknown name fails the build.
#[allow(clippy::panic)]
pub(crate) const BUILD_TIME_BACKEND: Option<Backend> = match option_env!("GRADGUARD_BACKEND") {
    None => None,
    Some(name) => match Backend::from_name(name) {
        Some(b) => Some(b),
        None => panic!("GRADGUARD_BACKEND must be scalar, sse2, avx2, avx512, neon or simd128"),
    },
};

/// 0 until the first kernel call, then the active backend's `repr(u8)`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The backend the kernels use now: [`set_backend`]'s choice, else `GRADGUARD_BACKEND`'s
/// (when this machine can run it), else [`Backend::best`]. Decided on first use.
///
/// ```
/// println!("gradguard kernels: {}", gradguard::kernels::backend().name());
/// ```
#[inline]
pub fn backend() -> Backend {
    if let Some(b) = Backend::from_u8(ACTIVE.load(Ordering::Relaxed)) {
        return b;
    }
    let chosen = match BUILD_TIME_BACKEND {
        Some(b) if b.is_available() => b,
        _ => Backend::best(),
    };
    // Only the first decision is stored: if `set_backend` ran meanwhile (on another
    // thread), its choice stays and is the one returned.
    #[cfg(target_has_atomic = "8")]
    match ACTIVE.compare_exchange(0, chosen as u8, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => chosen,
        Err(current) => Backend::from_u8(current).unwrap_or(chosen),
    }
    // Without compare-and-swap (Cortex-M0+, thumbv6m) the only backend is the scalar one,
    // so a concurrent `set_backend` can only have stored the same value.
    #[cfg(not(target_has_atomic = "8"))]
    {
        ACTIVE.store(chosen as u8, Ordering::Relaxed);
        chosen
    }
}

/// Makes every later kernel call use `backend` (for all threads). Fails, changing nothing,
/// if this machine cannot run it. Results differ between backends only where documented
/// (`dense_forward`'s summation order); everything else is bit-identical.
///
/// ```
/// use gradguard::kernels::{backend, set_backend, Backend};
/// let before = backend();
/// set_backend(Backend::Scalar).unwrap();
/// assert_eq!(backend(), Backend::Scalar);
/// set_backend(before).unwrap();
/// ```
///
/// # Errors
/// [`Error::BackendUnavailable`] if this machine or build cannot run `backend`; the active
/// backend is then unchanged.
pub fn set_backend(backend: Backend) -> Result<(), Error> {
    if !backend.is_available() {
        return Err(Error::BackendUnavailable(backend));
    }
    ACTIVE.store(backend as u8, Ordering::Relaxed);
    Ok(())
}

/// What the CPU and OS support, as far as gradguard's backends care.
#[derive(Clone, Copy)]
struct CpuFeatures {
    avx2_fma: bool,
    avx512: bool,
}

#[cfg(gradguard_sse2)]
fn cpu() -> CpuFeatures {
    /// Bit 7: detected; bit 0: AVX2+FMA; bit 1: AVX-512F.
    static CPU: AtomicU8 = AtomicU8::new(0);
    let mut bits = CPU.load(Ordering::Relaxed);
    if bits == 0 {
        bits = 0x80 | detect_x86();
        CPU.store(bits, Ordering::Relaxed);
    }
    CpuFeatures {
        avx2_fma: bits & 1 != 0,
        avx512: bits & 2 != 0,
    }
}

#[cfg(not(gradguard_sse2))]
fn cpu() -> CpuFeatures {
    CpuFeatures {
        avx2_fma: false,
        avx512: false,
    }
}

/// CPUID + XGETBV: bit 0 AVX2+FMA usable, bit 1 AVX-512F usable.
#[cfg(gradguard_sse2)]
#[allow(unused_unsafe)] // `__cpuid_count` became a safe function in Rust 1.9x
fn detect_x86() -> u8 {
    use core::arch::x86_64::__cpuid_count;
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 gives the highest leaf.
    let max_leaf = unsafe { __cpuid_count(0, 0) }.eax;
    if max_leaf < 7 {
        return 0;
    }
    // SAFETY: leaf 1 ≤ max_leaf (checked above).
    let leaf1 = unsafe { __cpuid_count(1, 0) };
    // SAFETY: leaf 7 ≤ max_leaf (checked above).
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let (avx, fma) = (leaf1.ecx & (1 << 28) != 0, leaf1.ecx & (1 << 12) != 0);
    let (avx2, avx512f) = (leaf7.ebx & (1 << 5) != 0, leaf7.ebx & (1 << 16) != 0);
    if !osxsave {
        return 0;
    }
    // SAFETY: CPUID.1:ECX.OSXSAVE = 1 (checked), so XGETBV is enabled and XCR0 readable.
    let xcr0 = unsafe { xcr0() };
    let os_avx = xcr0 & 0b110 == 0b110; // SSE and AVX state
    let os_avx512 = xcr0 & 0b1110_0110 == 0b1110_0110; // + opmask, ZMM_Hi256, Hi16_ZMM
    let avx2_fma = avx && fma && avx2 && os_avx;
    u8::from(avx2_fma) | (u8::from(avx2_fma && avx512f && os_avx512) << 1)
}

/// XCR0 (which register states the OS saves on a context switch).
///
/// # Safety
/// CPUID.1:ECX.OSXSAVE must be set.
#[cfg(gradguard_sse2)]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller checked OSXSAVE, so XGETBV with ECX = 0 does not fault.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}
