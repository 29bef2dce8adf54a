//! wasm32 simd128 vector type (`v128` as f32x4), implementing [`Lanes`] and [`Vector`].
//!
//! Compiled only with `-C target-feature=+simd128`, so every runtime that loads the module
//! validates these instructions; every load and store goes through a slice whose length was
//! checked. simd128 has no fused multiply-add (that is relaxed-simd), so `mul_add` rounds
//! twice.
#![allow(unused_unsafe)]

use core::arch::wasm32::*;
use core::ops::{Add, Div, Mul, Neg, Sub};

use super::generic::Vector;
use crate::lanes::{Lanes, ROUND_MAGIC_BITS};

/// Four f32 lanes in a simd128 register.
#[derive(Clone, Copy)]
pub(crate) struct Simd128(v128);

macro_rules! binary {
    ($Tr:ident, $f:ident, $op:ident) => {
        impl $Tr for Simd128 {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                Simd128($op(self.0, o.0))
            }
        }
    };
}
binary!(Add, add, f32x4_add);
binary!(Sub, sub, f32x4_sub);
binary!(Mul, mul, f32x4_mul);
binary!(Div, div, f32x4_div);

impl Neg for Simd128 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Simd128(f32x4_neg(self.0))
    }
}

impl crate::lanes::sealed::Sealed for Simd128 {}

impl Lanes for Simd128 {
    type Mask = v128;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Simd128(f32x4_splat(v))
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Simd128(f32x4_abs(self.0))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Simd128(f32x4_sqrt(self.0))
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // f32x4.max/min return NaN when either operand is NaN: NaN passes.
        Simd128(f32x4_min(
            f32x4_max(self.0, f32x4_splat(lo)),
            f32x4_splat(hi),
        ))
    }
    #[inline(always)]
    fn lt(self, other: Self) -> v128 {
        f32x4_lt(self.0, other.0)
    }
    #[inline(always)]
    fn le(self, other: Self) -> v128 {
        f32x4_le(self.0, other.0)
    }
    #[inline(always)]
    fn gt(self, other: Self) -> v128 {
        f32x4_gt(self.0, other.0)
    }
    #[inline(always)]
    fn ge(self, other: Self) -> v128 {
        f32x4_ge(self.0, other.0)
    }
    #[inline(always)]
    fn is_nan(self) -> v128 {
        f32x4_ne(self.0, self.0)
    }
    #[inline(always)]
    fn select(mask: v128, a: Self, b: Self) -> Self {
        Simd128(v128_bitselect(a.0, b.0, mask))
    }
    #[inline(always)]
    fn or_sign_of(self, sign: Self) -> Self {
        Simd128(v128_or(self.0, v128_and(sign.0, f32x4_splat(-0.0))))
    }
    #[inline(always)]
    fn mul_pow2_rounded(self, t: Self) -> Self {
        let n = i32x4_sub(t.0, i32x4_splat(ROUND_MAGIC_BITS));
        let n1 = i32x4_shr(n, 1);
        let n2 = i32x4_sub(n, n1);
        let bias = i32x4_splat(127);
        let p1 = Simd128(i32x4_shl(i32x4_add(n1, bias), 23));
        let p2 = Simd128(i32x4_shl(i32x4_add(n2, bias), 23));
        self * p1 * p2
    }
    #[inline(always)]
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
        super::generic::map_lanes_in_memory(self, f)
    }
}

impl Vector for Simd128 {
    const LANES: usize = 4;
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.get(..4) {
            // SAFETY: 16 readable bytes (checked); v128_load allows any alignment.
            Some(c) => Simd128(unsafe { v128_load(c.as_ptr().cast::<v128>()) }),
            None => Self::splat(0.0),
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(c) = s.get_mut(..4) {
            // SAFETY: 16 writable bytes (checked); v128_store allows any alignment.
            unsafe { v128_store(c.as_mut_ptr().cast::<v128>(), self.0) }
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self * b + c
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        let v = self.0;
        let h = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let h = f32x4_add(h, i32x4_shuffle::<1, 0, 3, 2>(h, h));
        f32x4_extract_lane::<0>(h)
    }
}
