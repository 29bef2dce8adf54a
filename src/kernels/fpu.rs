//! Reading (never writing) whether the floating-point unit flushes subnormals.
//!
//! Writing MXCSR/FPCR/FPSCR from Rust is undefined behaviour (the compiler assumes the
//! default mode); reading them is not. The `unsafe` blocks here are one read instruction
//! each (the crate's other `unsafe` code is in the other kernel modules: the SIMD
//! intrinsics, the dispatch and the Cortex-M VFP loops).

/// How this CPU treats subnormal f32 results.
///
/// ```
/// use gradguard::kernels::{subnormal_mode, SubnormalMode};
/// # #[cfg(target_arch = "x86_64")]
/// assert_eq!(subnormal_mode(), SubnormalMode::Preserved); // Rust's default on x86_64
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubnormalMode {
    /// Gradual underflow: subnormal results are kept (IEEE 754 default).
    Preserved,
    /// Flush-to-zero (or denormals-are-zero) is on: underflow appears as exact zeros.
    Flushed,
    /// No way to read the mode on this target (no FPU, a soft-float target such as
    /// `x86_64-unknown-none`, or an unsupported architecture).
    Unknown,
}

/// Reads the FPU control register of this CPU: MXCSR FTZ/DAZ on x86_64 with SSE, FPCR.FZ
/// on aarch64 with NEON, FPSCR.FZ on Cortex-M with a hardware FPU (hard-float ABI); otherwise
/// [`SubnormalMode::Unknown`].
///
/// ```
/// let mode = gradguard::kernels::subnormal_mode();
/// # let _ = mode;
/// ```
#[must_use]
pub fn subnormal_mode() -> SubnormalMode {
    imp::subnormal_mode()
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse", not(miri)))]
mod imp {
    use super::SubnormalMode;

    pub fn subnormal_mode() -> SubnormalMode {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR into the given, valid, aligned and
        // writable u32; it changes no register and no other memory. SSE is enabled for this
        // target (the cfg above), so the instruction exists and is permitted.
        unsafe {
            core::arch::asm!(
                "stmxcsr [{}]",
                in(reg) core::ptr::addr_of_mut!(csr),
                options(nostack, preserves_flags)
            );
        }
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        if csr & (FTZ | DAZ) != 0 {
            SubnormalMode::Flushed
        } else {
            SubnormalMode::Preserved
        }
    }
}

#[cfg(all(gradguard_neon, not(miri)))]
mod imp {
    use super::SubnormalMode;

    pub fn subnormal_mode() -> SubnormalMode {
        let fpcr: u64;
        // SAFETY: `mrs` reads FPCR into a general register; it has no other effect and is
        // permitted at EL0. The target has NEON (the cfg above), so the FPU is enabled.
        unsafe {
            core::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        if fpcr & (1 << 24) != 0 {
            SubnormalMode::Flushed
        } else {
            SubnormalMode::Preserved
        }
    }
}

#[cfg(all(target_arch = "arm", target_abi = "eabihf", not(miri)))]
mod imp {
    use super::SubnormalMode;

    pub fn subnormal_mode() -> SubnormalMode {
        let fpscr: u32;
        // SAFETY: the hard-float ABI implies an FPU; `vmrs` copies FPSCR into a general
        // register and has no other effect.
        unsafe {
            core::arch::asm!("vmrs {}, fpscr", out(reg) fpscr, options(nomem, nostack, preserves_flags));
        }
        if fpscr & (1 << 24) != 0 {
            SubnormalMode::Flushed
        } else {
            SubnormalMode::Preserved
        }
    }
}

// Also under Miri, which cannot interpret the inline assembly that reads the register.
#[cfg(any(
    miri,
    not(any(
        all(target_arch = "x86_64", target_feature = "sse"),
        gradguard_neon,
        all(target_arch = "arm", target_abi = "eabihf")
    ))
))]
mod imp {
    use super::SubnormalMode;

    pub fn subnormal_mode() -> SubnormalMode {
        SubnormalMode::Unknown
    }
}
