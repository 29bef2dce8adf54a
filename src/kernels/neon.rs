//! aarch64 NEON vector type (`float32x4_t`), implementing [`Lanes`] and [`Vector`].
//!
//! NEON (Advanced SIMD) is part of the aarch64 baseline, so these intrinsics are available
//! on every aarch64 CPU; every load and store goes through a slice whose length was checked.
//! (Recent Rust versions made the register-only intrinsics safe to call where the feature is
//! enabled; the `unsafe` blocks stay for older compilers.)
#![allow(unused_unsafe)]

use core::arch::aarch64::*;
use core::ops::{Add, Div, Mul, Neg, Sub};

use super::generic::Vector;
use crate::lanes::{Lanes, ROUND_MAGIC_BITS};

/// Four f32 lanes in a NEON register.
#[derive(Clone, Copy)]
pub(crate) struct Neon(float32x4_t);

macro_rules! binary {
    ($Tr:ident, $f:ident, $op:ident) => {
        impl $Tr for Neon {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                // SAFETY: NEON is baseline on aarch64; registers only.
                Neon(unsafe { $op(self.0, o.0) })
            }
        }
    };
}
binary!(Add, add, vaddq_f32);
binary!(Sub, sub, vsubq_f32);
binary!(Mul, mul, vmulq_f32);
binary!(Div, div, vdivq_f32);

impl Neg for Neon {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vnegq_f32(self.0) })
    }
}

impl crate::lanes::sealed::Sealed for Neon {}

impl Lanes for Neon {
    type Mask = uint32x4_t;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vdupq_n_f32(v) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vabsq_f32(self.0) })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vsqrtq_f32(self.0) })
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // FMAX/FMIN return NaN when either operand is NaN: NaN passes.
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vminq_f32(vmaxq_f32(self.0, vdupq_n_f32(lo)), vdupq_n_f32(hi)) })
    }
    #[inline(always)]
    fn lt(self, other: Self) -> uint32x4_t {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vcltq_f32(self.0, other.0) }
    }
    #[inline(always)]
    fn le(self, other: Self) -> uint32x4_t {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vcleq_f32(self.0, other.0) }
    }
    #[inline(always)]
    fn gt(self, other: Self) -> uint32x4_t {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vcgtq_f32(self.0, other.0) }
    }
    #[inline(always)]
    fn ge(self, other: Self) -> uint32x4_t {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vcgeq_f32(self.0, other.0) }
    }
    #[inline(always)]
    fn is_nan(self) -> uint32x4_t {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vmvnq_u32(vceqq_f32(self.0, self.0)) }
    }
    #[inline(always)]
    fn select(mask: uint32x4_t, a: Self, b: Self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vbslq_f32(mask, a.0, b.0) })
    }
    #[inline(always)]
    fn or_sign_of(self, sign: Self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe {
            let s = vandq_u32(vreinterpretq_u32_f32(sign.0), vdupq_n_u32(0x8000_0000));
            vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(self.0), s))
        })
    }
    #[inline(always)]
    fn mul_pow2_rounded(self, t: Self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        let (p1, p2) = unsafe {
            let n = vsubq_s32(vreinterpretq_s32_f32(t.0), vdupq_n_s32(ROUND_MAGIC_BITS));
            let n1 = vshrq_n_s32::<1>(n);
            let n2 = vsubq_s32(n, n1);
            let bias = vdupq_n_s32(127);
            let p1 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n1, bias)));
            let p2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n2, bias)));
            (Neon(p1), Neon(p2))
        };
        self * p1 * p2
    }
    #[inline(always)]
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
        super::generic::map_lanes_in_memory(self, f)
    }
}

impl Vector for Neon {
    const LANES: usize = 4;
    const MANY_REGISTERS: bool = true;
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.get(..4) {
            // SAFETY: 4 readable f32 (checked); NEON is baseline on aarch64.
            Some(c) => Neon(unsafe { vld1q_f32(c.as_ptr()) }),
            None => Self::splat(0.0),
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(c) = s.get_mut(..4) {
            // SAFETY: 4 writable f32 (checked); NEON is baseline on aarch64.
            unsafe { vst1q_f32(c.as_mut_ptr(), self.0) }
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: NEON is baseline on aarch64; registers only.
        Neon(unsafe { vfmaq_f32(c.0, self.0, b.0) })
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        // SAFETY: NEON is baseline on aarch64; registers only.
        unsafe { vaddvq_f32(self.0) }
    }
    #[inline(always)]
    fn reduce_sum4(v: [Self; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        // Pairwise adds: [a0+a1, a2+a3, b0+b1, b2+b3], then the sums of the pairs.
        // SAFETY: NEON is baseline on aarch64; registers only.
        let s = Neon(unsafe { vpaddq_f32(vpaddq_f32(a.0, b.0), vpaddq_f32(c.0, d.0)) });
        let mut out = [0.0; 4];
        s.store(&mut out);
        out
    }
}
