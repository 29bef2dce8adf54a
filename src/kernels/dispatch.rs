//! Which backend runs: detection without std, a cached choice, an override, and one
//! `#[target_feature]` wrapper per kernel and instruction set.
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
            Backend::Sse2 => cfg!(gradguard_sse2),
            Backend::Avx2 => cpu().avx2_fma,
            Backend::Avx512 => cpu().avx512,
            Backend::Neon => cfg!(gradguard_neon),
            Backend::Simd128 => cfg!(gradguard_simd128),
        }
    }

    /// Whether the backend's matrix kernels fuse multiply-adds (AVX2+FMA, AVX-512F, NEON),
    /// so that dX and dW differ from the scalar reference within
    /// [`matrix_error_bound`](super::matrix_error_bound) instead of matching it bit for bit.
    ///
    /// ```
    /// use gradguard::kernels::Backend;
    /// assert!(Backend::Avx512.fuses_multiply_add() && !Backend::Sse2.fuses_multiply_add());
    /// ```
    #[must_use]
    pub const fn fuses_multiply_add(self) -> bool {
        matches!(self, Backend::Avx2 | Backend::Avx512 | Backend::Neon)
    }

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

    const fn from_u8(v: u8) -> Option<Backend> {
        match v {
            1 => Some(Backend::Scalar),
            2 => Some(Backend::Sse2),
            3 => Some(Backend::Avx2),
            4 => Some(Backend::Avx512),
            5 => Some(Backend::Neon),
            6 => Some(Backend::Simd128),
            _ => None,
        }
    }
}

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

/// One wrapper per kernel for a vector type `$V`, each carrying the `$attr` attributes
/// (`#[target_feature(...)]`), so the generic bodies in `generic` are compiled once per
/// instruction set.
///
/// Every wrapper is `unsafe`: its caller must have checked that the CPU supports `$attr`.
#[cfg_attr(not(gradguard_simd), allow(unused_macros))]
macro_rules! backend_kernels {
    ($V:ty $(, #[$attr:meta])*) => {
        use crate::kernels::generic::{self, AdamStep, LaneMap};
        use crate::kernels::GradMode;

        $(#[$attr])*
        pub(crate) unsafe fn dense_forward<const IN: usize, const OUT: usize, const B: usize>(
            w: &[[f32; IN]; OUT],
            b: &[f32; OUT],
            x: &[[f32; IN]; B],
            z: &mut [[f32; OUT]; B],
        ) {
            generic::dense_forward::<$V, IN, OUT, B>(w, b, x, z)
        }

        $(#[$attr])*
        pub(crate) unsafe fn dense_backward_input<
            const IN: usize,
            const OUT: usize,
            const B: usize,
        >(
            w: &[[f32; IN]; OUT],
            dz: &[[f32; OUT]; B],
            dx: &mut [[f32; IN]; B],
        ) {
            generic::dense_backward_input::<$V, IN, OUT, B>(w, dz, dx)
        }

        $(#[$attr])*
        pub(crate) unsafe fn dense_backward_params<
            const IN: usize,
            const OUT: usize,
            const B: usize,
        >(
            dz: &[[f32; OUT]; B],
            x: &[[f32; IN]; B],
            dw: &mut [[f32; IN]; OUT],
            db: &mut [f32; OUT],
            mode: GradMode,
        ) {
            generic::dense_backward_params::<$V, IN, OUT, B>(dz, x, dw, db, mode)
        }

        $(#[$attr])*
        pub(crate) unsafe fn map<F: LaneMap>(
            f: &F,
            a: &[f32],
            b: &[f32],
            c: &[f32],
            out: &mut [f32],
        ) {
            generic::map::<$V, F>(f, a, b, c, out)
        }

        $(#[$attr])*
        pub(crate) unsafe fn batch_statistics(
            x: &[f32],
            features: usize,
            mean: &mut [f32],
            variance: &mut [f32],
            unbiased: &mut [f32],
        ) {
            generic::batch_statistics::<$V>(x, features, mean, variance, unbiased)
        }

        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn batch_normalize(
            x: &[f32],
            features: usize,
            mean: &[f32],
            variance: &[f32],
            epsilon: f32,
            gamma: &[f32],
            beta: &[f32],
            z: &mut [f32],
        ) {
            generic::batch_normalize::<$V>(x, features, mean, variance, epsilon, gamma, beta, z)
        }

        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn batch_norm_backward(
            x: &[f32],
            dz: &[f32],
            mean: &[f32],
            variance: &[f32],
            gamma: &[f32],
            dgamma: &mut [f32],
            dbeta: &mut [f32],
            dx: &mut [f32],
            p: &generic::BatchNormBackward,
        ) {
            generic::batch_norm_backward::<$V>(x, dz, mean, variance, gamma, dgamma, dbeta, dx, p)
        }

        $(#[$attr])*
        pub(crate) unsafe fn sgd_update(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) {
            generic::sgd_update::<$V>(w, g, lr, weight_decay)
        }

        $(#[$attr])*
        pub(crate) unsafe fn sgd_momentum_update(
            w: &mut [f32],
            g: &[f32],
            velocity: &mut [f32],
            lr: f32,
            momentum: f32,
            weight_decay: f32,
        ) {
            generic::sgd_momentum_update::<$V>(w, g, velocity, lr, momentum, weight_decay)
        }

        $(#[$attr])*
        pub(crate) unsafe fn adam_update(
            w: &mut [f32],
            g: &[f32],
            m: &mut [f32],
            v: &mut [f32],
            step: &AdamStep,
        ) {
            generic::adam_update::<$V>(w, g, m, v, step)
        }

        $(#[$attr])*
        pub(crate) unsafe fn extremes(values: &[f32]) -> (f32, f32) {
            generic::extremes::<$V>(values)
        }

        $(#[$attr])*
        pub(crate) unsafe fn moments_full(values: &[f32], scale_exponent: i32) -> generic::Moments {
            generic::moments::<$V>(values, scale_exponent)
        }

        $(#[$attr])*
        pub(crate) unsafe fn moments_at_scale(values: &[f32], scale_exponent: i32) -> generic::Moments {
            generic::moments_at_scale::<$V, true>(values, scale_exponent)
        }

        $(#[$attr])*
        pub(crate) unsafe fn moments_unscaled(values: &[f32]) -> Option<generic::Moments> {
            Some(generic::moments_at_scale::<$V, false>(values, 0))
        }

        $(#[$attr])*
        pub(crate) unsafe fn norm_at_scale(
            values: &[f32],
            scale_exponent: i32,
            smallest: bool,
        ) -> generic::Moments {
            if smallest {
                generic::norm_lanes::<$V, true, true>(values, scale_exponent)
            } else {
                generic::norm_lanes::<$V, true, false>(values, scale_exponent)
            }
        }

        $(#[$attr])*
        pub(crate) unsafe fn norm_unscaled(values: &[f32], smallest: bool) -> Option<generic::Moments> {
            Some(if smallest {
                generic::norm_lanes::<$V, false, true>(values, 0)
            } else {
                generic::norm_lanes::<$V, false, false>(values, 0)
            })
        }


        $(#[$attr])*
        pub(crate) unsafe fn scaled_sums_finite(values: &[f32], inverse_scale: f32) -> (f32, f32) {
            generic::scaled_sums_finite::<$V>(values, inverse_scale)
        }

        $(#[$attr])*
        pub(crate) unsafe fn activation_backward_observed<A: crate::elementwise::Elementwise>(
            activation: &A,
            z: &[f32],
            dy: &[f32],
            dz: &mut [f32],
            units: usize,
            threshold: f32,
        ) -> generic::BackwardTally {
            generic::activation_backward_observed::<$V, A>(activation, z, dy, dz, units, threshold)
        }

        $(#[$attr])*
        pub(crate) unsafe fn attribute_underflow<A: crate::elementwise::Elementwise>(
            activation: &A,
            z: &[f32],
            dy: &[f32],
            dz: &[f32],
            lost_derivatives: bool,
        ) -> [u64; 3] {
            generic::attribute_underflow::<$V, A>(activation, z, dy, dz, lost_derivatives)
        }
    };
}

#[cfg(gradguard_sse2)]
pub(crate) mod sse2 {
    backend_kernels!(crate::kernels::x86::Sse2, #[target_feature(enable = "sse2")]);
}

#[cfg(gradguard_sse2)]
pub(crate) mod avx2 {
    backend_kernels!(crate::kernels::x86::Avx2, #[target_feature(enable = "avx2,fma")]);
}

#[cfg(gradguard_sse2)]
pub(crate) mod avx512 {
    backend_kernels!(crate::kernels::x86::Avx512, #[target_feature(enable = "avx512f,avx2,fma")]);
}

#[cfg(gradguard_neon)]
pub(crate) mod neon {
    backend_kernels!(crate::kernels::neon::Neon);
}

#[cfg(gradguard_simd128)]
pub(crate) mod simd128 {
    backend_kernels!(crate::kernels::wasm::Simd128);
}

/// Calls `$kernel` of the active backend; `$scalar` is the scalar-backend expression. On
/// targets without a SIMD backend (Cortex-M, RISC-V, …) it is just `$scalar`: no atomic
/// load, no branch.
macro_rules! dispatch {
    ($scalar:expr, $kernel:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(not(gradguard_simd))]
        let result = $scalar;
        #[cfg(gradguard_simd)]
        let result = {
            use crate::kernels::dispatch as d;
            // The dispatch is the one place outside the kernel modules' own files with
            // `unsafe`: each arm's SAFETY line says why its backend's wrapper may be called.
            #[allow(unsafe_code)]
            let result = match d::backend() {
                #[cfg(gradguard_sse2)]
                // SAFETY: `backend()` returns Avx512 only if `is_available` saw AVX-512F, AVX2
                // and FMA in CPUID and their register state enabled in XCR0.
                d::Backend::Avx512 => unsafe { d::avx512::$kernel($($arg),*) },
                #[cfg(gradguard_sse2)]
                // SAFETY: as above, for AVX2 and FMA.
                d::Backend::Avx2 => unsafe { d::avx2::$kernel($($arg),*) },
                #[cfg(gradguard_sse2)]
                // SAFETY: SSE2 is part of the x86_64 baseline.
                d::Backend::Sse2 => unsafe { d::sse2::$kernel($($arg),*) },
                #[cfg(gradguard_neon)]
                // SAFETY: NEON is part of the aarch64 baseline.
                d::Backend::Neon => unsafe { d::neon::$kernel($($arg),*) },
                #[cfg(gradguard_simd128)]
                // SAFETY: this build was compiled for simd128, so the module validated with it.
                d::Backend::Simd128 => unsafe { d::simd128::$kernel($($arg),*) },
                _ => $scalar,
            };
            result
        };
        result
    }};
}
pub(crate) use dispatch;
