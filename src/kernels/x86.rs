//! x86_64 vector types: SSE2 (`__m128`, the x86_64 baseline), AVX2+FMA (`__m256`) and
//! AVX-512F (`__m512`), each implementing [`Lanes`] and [`Vector`].
//!
//! **Invariant (what makes the `unsafe` blocks below sound):** a value of [`Avx2`] or
//! [`Avx512`] is only ever created inside the `#[target_feature]` kernels of
//! `kernels::dispatch`, which are only called once `dispatch` has verified with CPUID and
//! XGETBV that the CPU and the OS support those features. SSE2 is part of the x86_64
//! baseline, so [`Sse2`] needs no check. Every load and store goes through a slice whose
//! length was checked first.

use core::arch::x86_64::*;
use core::ops::{Add, Div, Mul, Neg, Sub};

use super::generic::Vector;
use crate::lanes::{Lanes, ROUND_MAGIC_BITS};

/// Four f32 lanes in an SSE register.
#[derive(Clone, Copy)]
pub(crate) struct Sse2(__m128);
/// Eight f32 lanes in an AVX register (the backend uses FMA in `mul_add`).
#[derive(Clone, Copy)]
pub(crate) struct Avx2(__m256);
/// Sixteen f32 lanes in an AVX-512 register.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(__m512);

/// The arithmetic operators of a vector type, one intrinsic each.
macro_rules! operators {
    ($V:ident, $add:ident, $sub:ident, $mul:ident, $div:ident, $xor:ident, $set1:ident) => {
        impl Add for $V {
            type Output = Self;
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $add(self.0, o.0) })
            }
        }
        impl Sub for $V {
            type Output = Self;
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $sub(self.0, o.0) })
            }
        }
        impl Mul for $V {
            type Output = Self;
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $mul(self.0, o.0) })
            }
        }
        impl Div for $V {
            type Output = Self;
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $div(self.0, o.0) })
            }
        }
        impl Neg for $V {
            type Output = Self;
            #[inline(always)]
            fn neg(self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $xor(self.0, $set1(-0.0)) })
            }
        }
    };
}

operators!(
    Sse2,
    _mm_add_ps,
    _mm_sub_ps,
    _mm_mul_ps,
    _mm_div_ps,
    _mm_xor_ps,
    _mm_set1_ps
);
operators!(
    Avx2,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_mul_ps,
    _mm256_div_ps,
    _mm256_xor_ps,
    _mm256_set1_ps
);
operators!(
    Avx512,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_mul_ps,
    _mm512_div_ps,
    xor512,
    _mm512_set1_ps
);

/// AVX-512F has no `xor_ps` (that is AVX-512DQ): XOR the bits as integers.
#[inline(always)]
unsafe fn xor512(a: __m512, b: __m512) -> __m512 {
    // SAFETY: AVX-512F exists (module invariant); registers only.
    unsafe {
        _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(a),
            _mm512_castps_si512(b),
        ))
    }
}

/// The memory access and lane operations shared by the SSE2 and AVX2 types, whose masks
/// are vectors of all-ones lanes.
macro_rules! vector_common {
    ($V:ident, $set1:ident, $cmp:ident, $and:ident, $andnot:ident, $or:ident, $sqrt:ident,
     $max:ident, $min:ident) => {
        impl crate::lanes::sealed::Sealed for $V {}

        impl Lanes for $V {
            type Mask = $V;
            #[inline(always)]
            fn splat(v: f32) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $set1(v) })
            }
            #[inline(always)]
            fn abs(self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $andnot($set1(-0.0), self.0) })
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $sqrt(self.0) })
            }
            #[inline(always)]
            fn clamp(self, lo: f32, hi: f32) -> Self {
                // max/min return their second operand when either is NaN: NaN passes.
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $min($set1(hi), $max($set1(lo), self.0)) })
            }
            #[inline(always)]
            fn lt(self, other: Self) -> Self {
                cmp!($V, $cmp, self, other, _CMP_LT_OQ, _mm_cmplt_ps)
            }
            #[inline(always)]
            fn le(self, other: Self) -> Self {
                cmp!($V, $cmp, self, other, _CMP_LE_OQ, _mm_cmple_ps)
            }
            #[inline(always)]
            fn gt(self, other: Self) -> Self {
                cmp!($V, $cmp, self, other, _CMP_GT_OQ, _mm_cmpgt_ps)
            }
            #[inline(always)]
            fn ge(self, other: Self) -> Self {
                cmp!($V, $cmp, self, other, _CMP_GE_OQ, _mm_cmpge_ps)
            }
            #[inline(always)]
            fn is_nan(self) -> Self {
                cmp!($V, $cmp, self, self, _CMP_UNORD_Q, _mm_cmpunord_ps)
            }
            #[inline(always)]
            fn select(mask: Self, a: Self, b: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $or($and(mask.0, a.0), $andnot(mask.0, b.0)) })
            }
            #[inline(always)]
            fn or_sign_of(self, sign: Self) -> Self {
                // SAFETY: the features exist (module invariant); registers only.
                $V(unsafe { $or(self.0, $and(sign.0, $set1(-0.0))) })
            }
            #[inline(always)]
            fn mul_pow2_rounded(self, t: Self) -> Self {
                let (p1, p2) = pow2_pair!($V, t);
                self * p1 * p2
            }
            #[inline(always)]
            fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
                super::generic::map_lanes_in_memory(self, f)
            }
        }
    };
}

/// A comparison: `_mm_cmp*_ps` for SSE2 (no VEX), `_mm256_cmp_ps::<PRED>` for AVX.
macro_rules! cmp {
    (Sse2, $cmp:ident, $a:expr, $b:expr, $pred:ident, $sse:ident) => {
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        Sse2(unsafe { $sse($a.0, $b.0) })
    };
    (Avx2, $cmp:ident, $a:expr, $b:expr, $pred:ident, $sse:ident) => {
        // SAFETY: AVX exists (module invariant); registers only.
        Avx2(unsafe { $cmp::<$pred>($a.0, $b.0) })
    };
}

/// 2^n1 and 2^n2 (n1 + n2 = n, both in [−75, 65]) from the rounded `t` = n + 1.5·2^23.
macro_rules! pow2_pair {
    (Sse2, $t:expr) => {{
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        unsafe {
            let n = _mm_sub_epi32(_mm_castps_si128($t.0), _mm_set1_epi32(ROUND_MAGIC_BITS));
            let n1 = _mm_srai_epi32::<1>(n);
            let n2 = _mm_sub_epi32(n, n1);
            let bias = _mm_set1_epi32(127);
            let p1 = _mm_castsi128_ps(_mm_slli_epi32::<23>(_mm_add_epi32(n1, bias)));
            let p2 = _mm_castsi128_ps(_mm_slli_epi32::<23>(_mm_add_epi32(n2, bias)));
            (Sse2(p1), Sse2(p2))
        }
    }};
    (Avx2, $t:expr) => {{
        // SAFETY: AVX2 exists (module invariant); registers only.
        unsafe {
            let n = _mm256_sub_epi32(
                _mm256_castps_si256($t.0),
                _mm256_set1_epi32(ROUND_MAGIC_BITS),
            );
            let n1 = _mm256_srai_epi32::<1>(n);
            let n2 = _mm256_sub_epi32(n, n1);
            let bias = _mm256_set1_epi32(127);
            let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
            let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
            (Avx2(p1), Avx2(p2))
        }
    }};
}

vector_common!(
    Sse2,
    _mm_set1_ps,
    _mm_cmp_ps,
    _mm_and_ps,
    _mm_andnot_ps,
    _mm_or_ps,
    _mm_sqrt_ps,
    _mm_max_ps,
    _mm_min_ps
);
vector_common!(
    Avx2,
    _mm256_set1_ps,
    _mm256_cmp_ps,
    _mm256_and_ps,
    _mm256_andnot_ps,
    _mm256_or_ps,
    _mm256_sqrt_ps,
    _mm256_max_ps,
    _mm256_min_ps
);

/// `[a0+a1+a2+a3, b…, c…, d…]` of four SSE vectors by a 4×4 transpose and three adds.
#[inline(always)]
unsafe fn sum4_128(a: __m128, b: __m128, c: __m128, d: __m128) -> __m128 {
    // SAFETY: SSE2 is baseline on x86_64; registers only.
    unsafe {
        let ab_lo = _mm_unpacklo_ps(a, b); // a0 b0 a1 b1
        let ab_hi = _mm_unpackhi_ps(a, b); // a2 b2 a3 b3
        let cd_lo = _mm_unpacklo_ps(c, d);
        let cd_hi = _mm_unpackhi_ps(c, d);
        let ab = _mm_add_ps(ab_lo, ab_hi); // a0+a2 b0+b2 a1+a3 b1+b3
        let cd = _mm_add_ps(cd_lo, cd_hi);
        let lo = _mm_movelh_ps(ab, cd); // a02 b02 c02 d02
        let hi = _mm_movehl_ps(cd, ab); // a13 b13 c13 d13
        _mm_add_ps(lo, hi)
    }
}

impl Vector for Sse2 {
    const LANES: usize = 4;
    #[inline(always)]
    fn max_or_keep(self, acc: Self) -> Self {
        // maxps returns its second operand unless the first is greater (NaN keeps acc).
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        Sse2(unsafe { _mm_max_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn min_or_keep(self, acc: Self) -> Self {
        // minps returns its second operand unless the first is smaller (NaN keeps acc).
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        Sse2(unsafe { _mm_min_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.get(..4) {
            // SAFETY: 4 readable f32 (checked); unaligned load; SSE2 is baseline.
            Some(c) => Sse2(unsafe { _mm_loadu_ps(c.as_ptr()) }),
            None => Self::splat(0.0),
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(c) = s.get_mut(..4) {
            // SAFETY: 4 writable f32 (checked); unaligned store; SSE2 is baseline.
            unsafe { _mm_storeu_ps(c.as_mut_ptr(), self.0) }
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self * b + c
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        unsafe {
            let h = _mm_add_ps(self.0, _mm_movehl_ps(self.0, self.0));
            _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h)))
        }
    }
    #[inline(always)]
    fn reduce_sum4(v: [Self; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        // SAFETY: SSE2 is baseline on x86_64; registers only.
        let s = Sse2(unsafe { sum4_128(a.0, b.0, c.0, d.0) });
        let mut out = [0.0; 4];
        s.store(&mut out);
        out
    }
}

impl Avx2 {
    /// Low and high 128-bit halves added: four partial sums.
    #[inline(always)]
    fn halves_added(self) -> Sse2 {
        // SAFETY: AVX exists (module invariant); registers only.
        Sse2(unsafe {
            _mm_add_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            )
        })
    }
}

impl Avx512 {
    /// Low and high 256-bit halves added (AVX-512F has no f32x8 extract: go through f64x4).
    #[inline(always)]
    fn halves_added(self) -> Avx2 {
        // SAFETY: AVX-512F (and with it AVX) exists (module invariant); registers only.
        Avx2(unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(self.0)));
            _mm256_add_ps(_mm512_castps512_ps256(self.0), hi)
        })
    }
}

/// A mask of the first `n` (< 8) lanes: all-ones there (the sign bit selects).
#[inline(always)]
fn avx2_first_lanes(n: usize) -> __m256i {
    let n = n.min(7) as i32;
    // SAFETY: AVX2 exists (module invariant: only AVX2 kernels call this); registers only.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

impl Vector for Avx2 {
    const REGISTER_TRANSPOSE: bool = true;
    /// 24 shuffles: pairs and quadruples within 128-bit lanes, then the halves.
    #[inline(always)]
    fn transpose(rows: &mut [Self]) {
        if let Ok(
            [Avx2(r0), Avx2(r1), Avx2(r2), Avx2(r3), Avx2(r4), Avx2(r5), Avx2(r6), Avx2(r7)],
        ) = <&mut [Self; 8]>::try_from(rows)
        {
            // SAFETY: AVX exists (module invariant); registers only.
            unsafe {
                let t0 = _mm256_unpacklo_ps(*r0, *r1);
                let t1 = _mm256_unpackhi_ps(*r0, *r1);
                let t2 = _mm256_unpacklo_ps(*r2, *r3);
                let t3 = _mm256_unpackhi_ps(*r2, *r3);
                let t4 = _mm256_unpacklo_ps(*r4, *r5);
                let t5 = _mm256_unpackhi_ps(*r4, *r5);
                let t6 = _mm256_unpacklo_ps(*r6, *r7);
                let t7 = _mm256_unpackhi_ps(*r6, *r7);
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                *r0 = _mm256_permute2f128_ps::<0x20>(s0, s4);
                *r1 = _mm256_permute2f128_ps::<0x20>(s1, s5);
                *r2 = _mm256_permute2f128_ps::<0x20>(s2, s6);
                *r3 = _mm256_permute2f128_ps::<0x20>(s3, s7);
                *r4 = _mm256_permute2f128_ps::<0x31>(s0, s4);
                *r5 = _mm256_permute2f128_ps::<0x31>(s1, s5);
                *r6 = _mm256_permute2f128_ps::<0x31>(s2, s6);
                *r7 = _mm256_permute2f128_ps::<0x31>(s3, s7);
            }
        }
    }
    const LANES: usize = 8;
    #[inline(always)]
    fn load_partial(s: &[f32], n: usize) -> Self {
        // SAFETY: AVX exists (module invariant); the mask selects lanes 0..n, all within
        // `s` (n ≤ s.len()); masked-off lanes are not read and cannot fault.
        Avx2(unsafe { _mm256_maskload_ps(s.as_ptr(), avx2_first_lanes(n.min(s.len()))) })
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], n: usize) {
        // SAFETY: as above; only lanes 0..n are written, all within `s`.
        unsafe { _mm256_maskstore_ps(s.as_mut_ptr(), avx2_first_lanes(n.min(s.len())), self.0) }
    }
    #[inline(always)]
    fn max_or_keep(self, acc: Self) -> Self {
        // maxps returns its second operand unless the first is greater (NaN keeps acc).
        // SAFETY: AVX exists (module invariant); registers only.
        Avx2(unsafe { _mm256_max_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn min_or_keep(self, acc: Self) -> Self {
        // minps returns its second operand unless the first is smaller (NaN keeps acc).
        // SAFETY: AVX exists (module invariant); registers only.
        Avx2(unsafe { _mm256_min_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.get(..8) {
            // SAFETY: 8 readable f32 (checked); unaligned load; AVX exists (invariant).
            Some(c) => Avx2(unsafe { _mm256_loadu_ps(c.as_ptr()) }),
            None => Self::splat(0.0),
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(c) = s.get_mut(..8) {
            // SAFETY: 8 writable f32 (checked); unaligned store; AVX exists (invariant).
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), self.0) }
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: FMA exists (module invariant); registers only.
        Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        // SAFETY: AVX exists (module invariant); registers only.
        let half = unsafe {
            _mm_add_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            )
        };
        Sse2(half).reduce_sum()
    }
    #[inline(always)]
    fn reduce_sum4(v: [Self; 4]) -> [f32; 4] {
        // (No `array::map` here: a closure it does not inline would run without AVX.)
        let [a, b, c, d] = v;
        Sse2::reduce_sum4([
            a.halves_added(),
            b.halves_added(),
            c.halves_added(),
            d.halves_added(),
        ])
    }
}

impl crate::lanes::sealed::Sealed for Avx512 {}

impl Lanes for Avx512 {
    type Mask = __mmask16;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_set1_ps(v) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_sqrt_ps(self.0) })
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // max/min return their second operand when either is NaN: NaN passes.
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe {
            _mm512_min_ps(
                _mm512_set1_ps(hi),
                _mm512_max_ps(_mm512_set1_ps(lo), self.0),
            )
        })
    }
    #[inline(always)]
    fn lt(self, other: Self) -> __mmask16 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    fn le(self, other: Self) -> __mmask16 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LE_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    fn gt(self, other: Self) -> __mmask16 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    fn ge(self, other: Self) -> __mmask16 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    fn is_nan(self) -> __mmask16 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, self.0) }
    }
    #[inline(always)]
    fn select(mask: __mmask16, a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_mask_blend_ps(mask, b.0, a.0) })
    }
    #[inline(always)]
    fn or_sign_of(self, sign: Self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe {
            let s = _mm512_and_si512(_mm512_castps_si512(sign.0), _mm512_set1_epi32(i32::MIN));
            _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(self.0), s))
        })
    }
    #[inline(always)]
    fn mul_pow2_rounded(self, t: Self) -> Self {
        // `vscalefps` computes self · 2^floor(n) rounded once, as IEEE prescribes for scaleB,
        // which is what the two-product form of the other backends gives (its first product
        // is exact): the same bits in 2 operations instead of 9. n = t − 1.5·2^23 is exact
        // (t is an integer below 2^24 in magnitude), and a NaN t gives a NaN n and result.
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe {
            let n = _mm512_sub_ps(t.0, _mm512_set1_ps(f32::from_bits(ROUND_MAGIC_BITS as u32)));
            _mm512_scalef_ps(self.0, n)
        })
    }
    #[inline(always)]
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
        super::generic::map_lanes_in_memory(self, f)
    }
}

impl Vector for Avx512 {
    const LANES: usize = 16;
    const MANY_REGISTERS: bool = true;
    const REGISTER_TRANSPOSE: bool = true;
    /// 64 shuffles: pairs and quadruples within 128-bit lanes (`unpack` of singles and of
    /// pairs), then two levels over 128-bit lanes.
    #[inline(always)]
    fn transpose(rows: &mut [Self]) {
        let Ok(rows) = <&mut [Self; 16]>::try_from(rows) else {
            return;
        };
        // (Destructured, not `array::map`, which LLVM left out of line as a 1 KiB copy; and
        // macros, not closures: a closure LLVM does not inline would run without AVX-512.)
        let [Avx512(r0), Avx512(r1), Avx512(r2), Avx512(r3), Avx512(r4), Avx512(r5), Avx512(r6), Avx512(r7), Avx512(r8), Avx512(r9), Avx512(r10), Avx512(r11), Avx512(r12), Avx512(r13), Avx512(r14), Avx512(r15)] =
            *rows;
        macro_rules! pairs {
            ($f:ident, $a:expr, $b:expr) => {
                _mm512_castpd_ps($f(_mm512_castps_pd($a), _mm512_castps_pd($b)))
            };
        }
        // SAFETY: AVX-512F exists (module invariant); registers only.
        let out = unsafe {
            let (t0, t1) = (_mm512_unpacklo_ps(r0, r1), _mm512_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm512_unpacklo_ps(r2, r3), _mm512_unpackhi_ps(r2, r3));
            let (t4, t5) = (_mm512_unpacklo_ps(r4, r5), _mm512_unpackhi_ps(r4, r5));
            let (t6, t7) = (_mm512_unpacklo_ps(r6, r7), _mm512_unpackhi_ps(r6, r7));
            let (t8, t9) = (_mm512_unpacklo_ps(r8, r9), _mm512_unpackhi_ps(r8, r9));
            let (t10, t11) = (_mm512_unpacklo_ps(r10, r11), _mm512_unpackhi_ps(r10, r11));
            let (t12, t13) = (_mm512_unpacklo_ps(r12, r13), _mm512_unpackhi_ps(r12, r13));
            let (t14, t15) = (_mm512_unpacklo_ps(r14, r15), _mm512_unpackhi_ps(r14, r15));
            let u0 = pairs!(_mm512_unpacklo_pd, t0, t2);
            let u1 = pairs!(_mm512_unpackhi_pd, t0, t2);
            let u2 = pairs!(_mm512_unpacklo_pd, t1, t3);
            let u3 = pairs!(_mm512_unpackhi_pd, t1, t3);
            let u4 = pairs!(_mm512_unpacklo_pd, t4, t6);
            let u5 = pairs!(_mm512_unpackhi_pd, t4, t6);
            let u6 = pairs!(_mm512_unpacklo_pd, t5, t7);
            let u7 = pairs!(_mm512_unpackhi_pd, t5, t7);
            let u8 = pairs!(_mm512_unpacklo_pd, t8, t10);
            let u9 = pairs!(_mm512_unpackhi_pd, t8, t10);
            let u10 = pairs!(_mm512_unpacklo_pd, t9, t11);
            let u11 = pairs!(_mm512_unpackhi_pd, t9, t11);
            let u12 = pairs!(_mm512_unpacklo_pd, t12, t14);
            let u13 = pairs!(_mm512_unpackhi_pd, t12, t14);
            let u14 = pairs!(_mm512_unpacklo_pd, t13, t15);
            let u15 = pairs!(_mm512_unpackhi_pd, t13, t15);
            // 128-bit lanes: 0x88 takes lanes 0 and 2 of each operand, 0xDD lanes 1 and 3.
            let v0 = _mm512_shuffle_f32x4::<0x88>(u0, u4);
            let v1 = _mm512_shuffle_f32x4::<0x88>(u1, u5);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u2, u6);
            let v3 = _mm512_shuffle_f32x4::<0x88>(u3, u7);
            let v4 = _mm512_shuffle_f32x4::<0xDD>(u0, u4);
            let v5 = _mm512_shuffle_f32x4::<0xDD>(u1, u5);
            let v6 = _mm512_shuffle_f32x4::<0xDD>(u2, u6);
            let v7 = _mm512_shuffle_f32x4::<0xDD>(u3, u7);
            let v8 = _mm512_shuffle_f32x4::<0x88>(u8, u12);
            let v9 = _mm512_shuffle_f32x4::<0x88>(u9, u13);
            let v10 = _mm512_shuffle_f32x4::<0x88>(u10, u14);
            let v11 = _mm512_shuffle_f32x4::<0x88>(u11, u15);
            let v12 = _mm512_shuffle_f32x4::<0xDD>(u8, u12);
            let v13 = _mm512_shuffle_f32x4::<0xDD>(u9, u13);
            let v14 = _mm512_shuffle_f32x4::<0xDD>(u10, u14);
            let v15 = _mm512_shuffle_f32x4::<0xDD>(u11, u15);
            [
                _mm512_shuffle_f32x4::<0x88>(v0, v8),
                _mm512_shuffle_f32x4::<0x88>(v1, v9),
                _mm512_shuffle_f32x4::<0x88>(v2, v10),
                _mm512_shuffle_f32x4::<0x88>(v3, v11),
                _mm512_shuffle_f32x4::<0x88>(v4, v12),
                _mm512_shuffle_f32x4::<0x88>(v5, v13),
                _mm512_shuffle_f32x4::<0x88>(v6, v14),
                _mm512_shuffle_f32x4::<0x88>(v7, v15),
                _mm512_shuffle_f32x4::<0xDD>(v0, v8),
                _mm512_shuffle_f32x4::<0xDD>(v1, v9),
                _mm512_shuffle_f32x4::<0xDD>(v2, v10),
                _mm512_shuffle_f32x4::<0xDD>(v3, v11),
                _mm512_shuffle_f32x4::<0xDD>(v4, v12),
                _mm512_shuffle_f32x4::<0xDD>(v5, v13),
                _mm512_shuffle_f32x4::<0xDD>(v6, v14),
                _mm512_shuffle_f32x4::<0xDD>(v7, v15),
            ]
        };
        for (d, v) in rows.iter_mut().zip(out) {
            *d = Avx512(v);
        }
    }
    #[inline(always)]
    fn load_partial(s: &[f32], n: usize) -> Self {
        let n = n.min(s.len()).min(15);
        let mask = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: the n unmasked lanes are within `s` (n ≤ s.len()); masked-off lanes are
        // not read and cannot fault; AVX-512F exists (module invariant).
        Avx512(unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) })
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], n: usize) {
        let n = n.min(s.len()).min(15);
        let mask = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: only the n unmasked lanes are written, all within `s` (n ≤ s.len());
        // AVX-512F exists (module invariant).
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), mask, self.0) }
    }
    #[inline(always)]
    fn max_or_keep(self, acc: Self) -> Self {
        // maxps returns its second operand unless the first is greater (NaN keeps acc).
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_max_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn min_or_keep(self, acc: Self) -> Self {
        // minps returns its second operand unless the first is smaller (NaN keeps acc).
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_min_ps(self.0, acc.0) })
    }
    #[inline(always)]
    fn min_where(mask: __mmask16, a: Self, acc: Self) -> Self {
        // minps returns its second operand unless the first is smaller (NaN keeps acc).
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_mask_min_ps(acc.0, mask, a.0, acc.0) })
    }
    #[inline(always)]
    fn count_where(mask: __mmask16, acc: Self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_mask_add_ps(acc.0, mask, acc.0, _mm512_set1_ps(1.0)) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        match s.get(..16) {
            // SAFETY: 16 readable f32 (checked); unaligned load; AVX-512F exists (invariant).
            Some(c) => Avx512(unsafe { _mm512_loadu_ps(c.as_ptr()) }),
            None => Self::splat(0.0),
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(c) = s.get_mut(..16) {
            // SAFETY: 16 writable f32 (checked); unaligned store; AVX-512F exists (invariant).
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), self.0) }
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        // SAFETY: AVX-512F exists (module invariant); registers only.
        unsafe { _mm512_reduce_add_ps(self.0) }
    }
    #[inline(always)]
    fn reduce_sum4(v: [Self; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        Avx2::reduce_sum4([
            a.halves_added(),
            b.halves_added(),
            c.halves_added(),
            d.halves_added(),
        ])
    }
    /// A transposing tree, 30 shuffles and 15 additions for 16 sums (four `reduce_sum4`
    /// take about 96 operations): each level adds two halves of every pair of vectors, so
    /// after four levels lane 4L + j of the result holds the sum of vector 4j + L, which
    /// one permutation puts in order.
    #[inline(always)]
    fn reduce_sum16(v: [Self; 16]) -> [f32; 16] {
        // (Destructured, not `array::map`: a closure it does not inline would run without
        // AVX-512.)
        let [Avx512(v0), Avx512(v1), Avx512(v2), Avx512(v3), Avx512(v4), Avx512(v5), Avx512(v6), Avx512(v7), Avx512(v8), Avx512(v9), Avx512(v10), Avx512(v11), Avx512(v12), Avx512(v13), Avx512(v14), Avx512(v15)] =
            v;
        let mut out = [0.0f32; 16];
        // SAFETY: AVX-512F exists (module invariant); registers, and one store of 16 f32
        // into `out`, which holds 16.
        unsafe {
            // 256-bit halves: t = [a.lo + a.hi (8 lanes) | b.lo + b.hi (8 lanes)].
            let t0 = avx512_add_lane_pairs::<0x44, 0xEE>(v0, v1);
            let t1 = avx512_add_lane_pairs::<0x44, 0xEE>(v2, v3);
            let t2 = avx512_add_lane_pairs::<0x44, 0xEE>(v4, v5);
            let t3 = avx512_add_lane_pairs::<0x44, 0xEE>(v6, v7);
            let t4 = avx512_add_lane_pairs::<0x44, 0xEE>(v8, v9);
            let t5 = avx512_add_lane_pairs::<0x44, 0xEE>(v10, v11);
            let t6 = avx512_add_lane_pairs::<0x44, 0xEE>(v12, v13);
            let t7 = avx512_add_lane_pairs::<0x44, 0xEE>(v14, v15);
            // 128-bit quarters: u = four vectors' 4-lane partial sums, one per 128-bit lane.
            let u0 = avx512_add_lane_pairs::<0x88, 0xDD>(t0, t1);
            let u1 = avx512_add_lane_pairs::<0x88, 0xDD>(t2, t3);
            let u2 = avx512_add_lane_pairs::<0x88, 0xDD>(t4, t5);
            let u3 = avx512_add_lane_pairs::<0x88, 0xDD>(t6, t7);
            // Within 128-bit lanes: pairs, then single lanes.
            let w0 = _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(u0, u1),
                _mm512_shuffle_ps::<0xEE>(u0, u1),
            );
            let w1 = _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(u2, u3),
                _mm512_shuffle_ps::<0xEE>(u2, u3),
            );
            let z = _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(w0, w1),
                _mm512_shuffle_ps::<0xDD>(w0, w1),
            );
            // Lane 4L + j holds vector 4j + L: result lane i takes lane 4·(i mod 4) + i/4.
            let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            _mm512_storeu_ps(out.as_mut_ptr(), _mm512_permutexvar_ps(order, z));
        }
        out
    }
}

/// `shuffle_f32x4::<FIRST>(a, b) + shuffle_f32x4::<SECOND>(a, b)`: one level over 128-bit
/// lanes of the sixteen-way reduction's tree. With 0x44/0xEE it adds the 256-bit halves
/// (`[a.lo + a.hi | b.lo + b.hi]`); with 0x88/0xDD, applied to two such results, it leaves
/// four vectors' 4-lane partial sums, one per 128-bit lane.
///
/// # Safety
/// The CPU must have AVX-512F (only AVX-512 kernels call this).
#[inline(always)]
unsafe fn avx512_add_lane_pairs<const FIRST: i32, const SECOND: i32>(
    a: __m512,
    b: __m512,
) -> __m512 {
    // SAFETY: AVX-512F exists (the caller's contract); registers only.
    unsafe {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<FIRST>(a, b),
            _mm512_shuffle_f32x4::<SECOND>(a, b),
        )
    }
}
