//! [`Lanes`]: the arithmetic every elementwise formula in gradguard is written against once.
//!
//! A formula such as σ'(x) is a generic function over `R: Lanes`. With `R = f32` it is the
//! scalar reference (and the microcontroller path); with a SIMD vector (`__m512`, `__m256`,
//! `__m128`, `float32x4_t`, `v128`, private to [`crate::kernels`]) it is the vector kernel.
//! Both run the same IEEE operations in the same order — no fused multiply-add, and every
//! data-dependent `if` is a [`Lanes::select`] of two values that were both computed — so the
//! vector results are the scalar results, bit for bit (NaN payloads aside, which Rust leaves
//! unspecified).
//!
//! A user activation implements [`crate::Elementwise::value`] and
//! [`crate::Elementwise::derivative`] on `f32`; its `*_lanes` forms default to
//! [`Lanes::map_lanes`], which applies the scalar function lane by lane.
//!
//! ```
//! use gradguard::lanes::Lanes;
//! fn softplus_derivative<R: Lanes>(x: R) -> R {
//!     gradguard::math::sigmoid_lanes(x)
//! }
//! assert_eq!(softplus_derivative(0.0_f32), 0.5);
//! ```

use core::ops::{Add, Div, Mul, Neg, Sub};

/// The seal of [`Lanes`]: implemented only inside the crate.
pub(crate) mod sealed {
    /// Implemented by the types the crate gives [`super::Lanes`].
    pub trait Sealed {}
    impl Sealed for f32 {}
}

/// One or more f32 lanes with IEEE-754 arithmetic, each lane rounded independently.
///
/// Implemented for `f32` (one lane) and, inside the crate, for the SIMD vector types and
/// pairs of them (several vectors evaluated interleaved).
/// Operators are lane-wise and round exactly like the `f32` operators.
///
/// Sealed: `f32` and the crate's SIMD vector types implement it; use it as a bound (as
/// [`crate::Elementwise`] does), not as a trait to implement.
///
/// ```
/// use gradguard::lanes::Lanes;
/// let x = <f32 as Lanes>::splat(-2.0);
/// assert_eq!(Lanes::abs(x), 2.0);
/// assert_eq!(f32::select(x.lt(0.0), 1.0, 2.0), 1.0);
/// ```
pub trait Lanes:
    sealed::Sealed
    + Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// A lane-wise boolean, the result of a comparison.
    type Mask: Copy;
    /// Every lane set to `v`.
    fn splat(v: f32) -> Self;
    /// |x|: the sign bit cleared (NaN stays NaN).
    fn abs(self) -> Self;
    /// The correctly rounded square root (IEEE `sqrt`, as `f32::sqrt`).
    fn sqrt(self) -> Self;
    /// `x.clamp(lo, hi)` for `lo ≤ hi`, with NaN passed through (as [`f32::clamp`]).
    fn clamp(self, lo: f32, hi: f32) -> Self;
    /// `self < other` per lane (false where either is NaN).
    fn lt(self, other: Self) -> Self::Mask;
    /// `self <= other` per lane (false where either is NaN).
    fn le(self, other: Self) -> Self::Mask;
    /// `self > other` per lane (false where either is NaN).
    fn gt(self, other: Self) -> Self::Mask;
    /// `self >= other` per lane (false where either is NaN).
    fn ge(self, other: Self) -> Self::Mask;
    /// True in the lanes that hold a NaN.
    fn is_nan(self) -> Self::Mask;
    /// Per lane: `if mask { a } else { b }`.
    fn select(mask: Self::Mask, a: Self, b: Self) -> Self;
    /// `self` with the sign bit of `sign` OR-ed in (`self` is non-negative or NaN).
    fn or_sign_of(self, sign: Self) -> Self;
    /// `self · 2^n` where `t = n + 1.5·2^23` is the output of the round-to-integer trick
    /// used by [`crate::math::exp`] (`n ∈ [−151, 129]`). Applied as two exact power-of-two
    /// products, so a subnormal result is rounded once.
    fn mul_pow2_rounded(self, t: Self) -> Self;
    /// Applies a scalar function to every lane: how an activation without a vector form
    /// runs inside a vector kernel (same results, one lane at a time).
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self;
}

/// 2^k for k ∈ [−126, 127], built from the exponent bits.
#[inline(always)]
pub(crate) fn pow2(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// 2^k for k ∈ [−149, 127] (subnormal powers included), exactly.
#[inline(always)]
pub(crate) fn pow2_wide(k: i32) -> f32 {
    if k >= -126 {
        pow2(k)
    } else {
        f32::from_bits(1u32 << (k + 149).clamp(0, 22))
    }
}

/// Multiplies by 2^k for k ∈ [-300, 300] in two steps, each exact unless its result is
/// subnormal.
#[inline(always)]
pub(crate) fn scale_by_pow2<R: Lanes>(v: R, k: i32) -> R {
    let half = k / 2;
    v * R::splat(pow2_wide(half.clamp(-149, 127)))
        * R::splat(pow2_wide((k - half).clamp(-149, 127)))
}

/// Exponent `e` with |v| < 2^e for a finite nonzero `v` (at least −126).
#[inline(always)]
pub(crate) fn exponent_bound(v: f32) -> i32 {
    let field = ((v.to_bits() >> 23) & 0xff) as i32;
    if field == 0 {
        -126
    } else {
        field - 126
    }
}

/// True if `p`, the f32 product of the nonzero finite `a` and `b`, equals their exact
/// product: integer significands (the exact product has at most 48 bits, a u64 holds it)
/// compared at `p`'s exponent. What the health tracking uses to tell an underflow (a tiny
/// result that lost something) from an exact subnormal product, without f64 arithmetic
/// (soft-float on a Cortex-M4F).
pub(crate) fn product_is_exact(a: f32, b: f32, p: f32) -> bool {
    // |x| = significand · 2^exponent, with the significand an integer below 2^24.
    fn parts(x: f32) -> (u64, i32) {
        let bits = x.to_bits() & 0x7fff_ffff;
        let (field, fraction) = ((bits >> 23) as i32, u64::from(bits & 0x007f_ffff));
        if field == 0 {
            (fraction, -149)
        } else {
            (fraction | 0x0080_0000, field - 150)
        }
    }
    let ((ma, ea), (mb, eb), (mp, ep)) = (parts(a), parts(b), parts(p));
    let product = ma * mb; // < 2^48
    let shift = ea + eb - ep; // exact = product · 2^shift · 2^ep
    if shift >= 0 {
        // product · 2^shift must equal mp < 2^24.
        shift < 24 && product << shift == mp
    } else {
        let s = shift.unsigned_abs();
        if s >= 64 {
            return product == 0 && mp == 0;
        }
        product & ((1u64 << s) - 1) == 0 && product >> s == mp
    }
}

/// The bits of 1.5·2^23, the constant of the round-to-integer trick.
pub(crate) const ROUND_MAGIC_BITS: i32 = 0x4b40_0000;

impl Lanes for f32 {
    type Mask = bool;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::from_bits(self.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(not(miri))]
        return libm::sqrtf(self);
        #[cfg(miri)]
        return sqrt_exact(self);
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // Written as compares (not `f32::clamp`, which asserts lo ≤ hi) so no panic path exists.
        let v = if self < lo { lo } else { self };
        if v > hi {
            hi
        } else {
            v
        }
    }
    #[inline(always)]
    fn lt(self, other: Self) -> bool {
        self < other
    }
    #[inline(always)]
    fn le(self, other: Self) -> bool {
        self <= other
    }
    #[inline(always)]
    fn gt(self, other: Self) -> bool {
        self > other
    }
    #[inline(always)]
    fn ge(self, other: Self) -> bool {
        self >= other
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn select(mask: bool, a: Self, b: Self) -> Self {
        if mask {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn or_sign_of(self, sign: Self) -> Self {
        f32::from_bits(self.to_bits() | (sign.to_bits() & 0x8000_0000))
    }
    #[inline(always)]
    fn mul_pow2_rounded(self, t: Self) -> Self {
        let n = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC_BITS);
        let n1 = n >> 1;
        let n2 = n.wrapping_sub(n1);
        self * pow2(n1) * pow2(n2)
    }
    #[inline(always)]
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
        f(self)
    }
}

/// Correctly rounded √x by integer arithmetic: what Miri runs instead of `libm::sqrtf`, whose
/// x86 version is inline assembly that Miri cannot interpret.
#[cfg(any(miri, test))]
pub(crate) fn sqrt_exact(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    // x = m·2^e with m an integer below 2^24 (subnormals included).
    let bits = x.to_bits();
    let field = (bits >> 23) as i32;
    let (m, e) = if field == 0 {
        (u64::from(bits), -149)
    } else {
        (u64::from(bits & 0x7f_ffff | 0x80_0000), field - 150)
    };
    // n = m·2^shift ∈ [2^60, 2^62) with e − shift even: √n has at least 30 bits.
    let mut shift = m.leading_zeros() as i32 - 2;
    if (e - shift) % 2 != 0 {
        shift -= 1;
    }
    let n = m << shift;
    let (mut rest, mut root, mut bit) = (n, 0u64, 1u64 << 62);
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rest >= root + bit {
            rest -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    let with_sticky = (root << 1) | u64::from(rest != 0);
    // √x = with_sticky·2^((e − shift)/2 − 1); the integer conversion rounds once, correctly.
    (with_sticky as f32) * pow2_wide((e - shift) / 2 - 1)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore)] // 200 000 cases: minutes under Miri
    fn product_exactness_matches_f64() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut tiny = 0;
        for _ in 0..200_000 {
            let r = next();
            // Factors whose products land around and below 2^-126, some with few bits.
            let a = f32::from_bits((r as u32 & 0x807f_ffff) | ((((r >> 32) as u32) % 140) << 23));
            let mask = if r & (1 << 40) != 0 {
                0xffff_ffff
            } else {
                0xfff8_0000
            };
            let b = f32::from_bits(
                ((r >> 8) as u32 & 0x807f_ffff & mask) | ((60 + ((r >> 48) as u32) % 70) << 23),
            );
            if a == 0.0 || b == 0.0 || !a.is_finite() || !b.is_finite() {
                continue;
            }
            let p = a * b;
            let exact = f64::from(p) == f64::from(a) * f64::from(b);
            assert_eq!(
                super::product_is_exact(a, b, p),
                exact,
                "{a:e} * {b:e} = {p:e}"
            );
            tiny += usize::from(p.abs() < f32::MIN_POSITIVE);
        }
        assert!(
            tiny > 10_000,
            "the sample reaches the subnormal range: {tiny}"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore)] // 200 000 cases: minutes under Miri
    fn integer_square_root_is_correctly_rounded() {
        // 200 000 positive finite values spread over every binade, subnormals included.
        for k in 0..200_000u32 {
            let x = f32::from_bits(k.wrapping_mul(10_651) % 0x7f80_0000);
            assert_eq!(
                super::sqrt_exact(x).to_bits(),
                libm::sqrtf(x).to_bits(),
                "{x:e}"
            );
        }
        for x in [
            0.0,
            -0.0,
            1.0,
            2.0,
            4.0,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            f32::INFINITY,
        ] {
            assert_eq!(
                super::sqrt_exact(x).to_bits(),
                libm::sqrtf(x).to_bits(),
                "{x:e}"
            );
        }
        assert!(super::sqrt_exact(-1.0).is_nan() && super::sqrt_exact(f32::NAN).is_nan());
    }
}

/// Two independent [`Lanes`] values evaluated operation by operation: `Pair<Pair<V>>` is
/// four vectors whose formulas are interleaved in program order. Same operations per lane,
/// so the same bits as evaluating each alone; what changes is that the processor sees
/// four independent dependency chains side by side. An exponential is a chain of about
/// 30 dependent operations (about 110 cycles on Zen 4); evaluated one vector at a time the
/// out-of-order window holds only about three of them, and σ + σ' ran at 32 cycles per
/// 16 values although its operations need about 20.
#[derive(Clone, Copy)]
pub(crate) struct Pair<R>(pub(crate) R, pub(crate) R);

impl<R: Lanes> sealed::Sealed for Pair<R> {}

macro_rules! pair_operator {
    ($trait:ident, $method:ident) => {
        impl<R: Lanes> $trait for Pair<R> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, other: Self) -> Self {
                Pair(self.0.$method(other.0), self.1.$method(other.1))
            }
        }
    };
}
pair_operator!(Add, add);
pair_operator!(Sub, sub);
pair_operator!(Mul, mul);
pair_operator!(Div, div);

impl<R: Lanes> Neg for Pair<R> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Pair(-self.0, -self.1)
    }
}

macro_rules! pair_comparison {
    ($($method:ident),*) => {
        $(
            #[inline(always)]
            fn $method(self, other: Self) -> Self::Mask {
                Pair(self.0.$method(other.0), self.1.$method(other.1))
            }
        )*
    };
}

impl<R: Lanes> Lanes for Pair<R> {
    type Mask = Pair<R::Mask>;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Pair(R::splat(v), R::splat(v))
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Pair(self.0.abs(), self.1.abs())
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Pair(self.0.sqrt(), self.1.sqrt())
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        Pair(self.0.clamp(lo, hi), self.1.clamp(lo, hi))
    }
    pair_comparison!(lt, le, gt, ge);
    #[inline(always)]
    fn is_nan(self) -> Self::Mask {
        Pair(self.0.is_nan(), self.1.is_nan())
    }
    #[inline(always)]
    fn select(mask: Self::Mask, a: Self, b: Self) -> Self {
        Pair(R::select(mask.0, a.0, b.0), R::select(mask.1, a.1, b.1))
    }
    #[inline(always)]
    fn or_sign_of(self, sign: Self) -> Self {
        Pair(self.0.or_sign_of(sign.0), self.1.or_sign_of(sign.1))
    }
    #[inline(always)]
    fn mul_pow2_rounded(self, t: Self) -> Self {
        Pair(self.0.mul_pow2_rounded(t.0), self.1.mul_pow2_rounded(t.1))
    }
    #[inline(always)]
    fn map_lanes(self, f: impl Fn(f32) -> f32) -> Self {
        Pair(self.0.map_lanes(&f), self.1.map_lanes(&f))
    }
}
