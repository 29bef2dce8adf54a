//! Weight initialisation, generic over any [`rand_core::Rng`].
//!
//! Sampling uses only integer operations and libm's software `logf`/`sqrtf`/`cosf`, so a
//! given seed produces the same weights, bit for bit, on every target (x86_64, Cortex-M4F,
//! soft-float Cortex-M0+, RISC-V).
//!
//! ```
//! use gradguard::init::{fill, Init};
//! use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
//! let mut w = [0.0_f32; 64 * 32];
//! fill(&mut w, 64, 32, Init::HeNormal, &mut rng);
//! let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
//! assert!((var - 2.0 / 64.0).abs() < 0.004);
//! ```

// Public functions take user-chosen sizes: no arithmetic that can overflow or panic.
#![deny(clippy::arithmetic_side_effects)]

use rand_core::Rng;

/// An initialisation scheme for weight matrices (biases always start at zero).
///
/// `fan_in` is the number of inputs of a unit, `fan_out` the number of units.
///
/// ```
/// use gradguard::init::Init;
/// assert_eq!(Init::HeNormal.standard_deviation(50, 10), 0.2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// All weights 0 (useful for tests; a network initialised this way cannot break symmetry).
    Zeros,
    /// N(0, 1): the classic setting in which deep sigmoid nets were found hard to train.
    StandardNormal,
    /// Glorot & Bengio (2010): U(−a, a) with a = √(6 / (fan_in + fan_out)).
    XavierUniform,
    /// Glorot & Bengio (2010): N(0, 2 / (fan_in + fan_out)).
    XavierNormal,
    /// He et al. (2015): U(−a, a) with a = √(6 / fan_in).
    HeUniform,
    /// He et al. (2015): N(0, 2 / fan_in).
    HeNormal,
}

impl Init {
    /// The standard deviation of the weights this scheme draws.
    ///
    /// ```
    /// use gradguard::init::Init;
    /// let (u, n) = (Init::XavierUniform.standard_deviation(64, 32), Init::XavierNormal.standard_deviation(64, 32));
    /// assert!((u - n).abs() < 1e-6); // same variance, different shape
    /// ```
    #[must_use]
    pub fn standard_deviation(self, fan_in: usize, fan_out: usize) -> f32 {
        let (fan_in, fan_out) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        match self {
            Init::Zeros => 0.0,
            Init::StandardNormal => 1.0,
            Init::XavierUniform | Init::XavierNormal => libm::sqrtf(2.0 / (fan_in + fan_out)),
            Init::HeUniform | Init::HeNormal => libm::sqrtf(2.0 / fan_in),
        }
    }
}

/// Fills `weights` (a flattened `fan_out × fan_in` matrix) in place according to `init`.
///
/// ```
/// use gradguard::init::{fill, Init};
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// let mut w = [1.0; 6];
/// fill(&mut w, 3, 2, Init::Zeros, &mut Xoshiro256PlusPlus::seed_from_u64(0));
/// assert_eq!(w, [0.0; 6]);
/// ```
pub fn fill<R: Rng + ?Sized>(
    weights: &mut [f32],
    fan_in: usize,
    fan_out: usize,
    init: Init,
    rng: &mut R,
) {
    let std = init.standard_deviation(fan_in, fan_out);
    match init {
        Init::Zeros => weights.iter_mut().for_each(|w| *w = 0.0),
        Init::StandardNormal | Init::XavierNormal | Init::HeNormal => {
            weights
                .iter_mut()
                .for_each(|w| *w = std * standard_normal(rng));
        }
        Init::XavierUniform | Init::HeUniform => {
            // U(-a, a) has standard deviation a/√3.
            let a = std * libm::sqrtf(3.0);
            weights
                .iter_mut()
                .for_each(|w| *w = a * (2.0 * uniform(rng) - 1.0));
        }
    }
}

/// A uniform f32 in [0, 1) with 24 random bits.
///
/// ```
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// let u = gradguard::init::uniform(&mut Xoshiro256PlusPlus::seed_from_u64(1));
/// assert!((0.0..1.0).contains(&u));
/// ```
pub fn uniform<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A standard normal f32 (Box–Muller, cosine branch).
///
/// ```
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// let z = gradguard::init::standard_normal(&mut Xoshiro256PlusPlus::seed_from_u64(1));
/// assert!(z.is_finite());
/// ```
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    // u1 in (0, 1] so the logarithm is finite.
    let u1 = ((rng.next_u32() >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0);
    let u2 = uniform(rng);
    libm::sqrtf(-2.0 * libm::logf(u1)) * cos_below_9pi_4(core::f32::consts::TAU * u2)
}

/// cos(x) for 0 ≤ x ≤ 9π/4, bit for bit `libm::cosf`: its branches for that range and its
/// two polynomial kernels, copied, without the general argument reduction (`rem_pio2f`),
/// which `standard_normal` never reaches (it asks for cos(2πu) with u in [0, 1)) but which a
/// firmware would link as about 2 KB of soft-f64 code. `tests/exhaustive.rs` checks all
/// 2^24 arguments `standard_normal` can pass against `libm::cosf`. Outside the range (never
/// here) the result is not a cosine.
///
/// From FreeBSD's s_cosf.c, k_cosf.c and k_sinf.c (via the `libm` crate): Copyright (C) 1993
/// by Sun Microsystems, Inc. All rights reserved. Developed at SunPro, a Sun Microsystems,
/// Inc. business. Permission to use, copy, modify, and distribute this software is freely
/// granted, provided that this notice is preserved.
#[allow(clippy::excessive_precision)] // the constants as FreeBSD writes them
fn cos_below_9pi_4(x: f32) -> f32 {
    use core::f64::consts::FRAC_PI_2;
    // |cos(x) − c(x)| < 2^-34.1 on [−π/4, π/4].
    let cos_kernel = |x: f64| {
        let z = x * x;
        let w = z * z;
        let r = -0.001_388_676_377_460_992_946_92 + z * 0.000_024_390_448_796_277_409_065_4;
        (((1.0 + z * -0.499_999_997_251_031_003_12) + w * 0.041_666_623_323_739_063_189_4)
            + (w * z) * r) as f32
    };
    // |sin(x)/x − s(x)| < 2^-37.5 on [−π/4, π/4].
    let sin_kernel = |x: f64| {
        let z = x * x;
        let w = z * z;
        let r = -0.000_198_393_348_360_966_317_347 + z * 0.000_002_718_311_493_989_821_906_4;
        let s = z * x;
        ((x + s * (-0.166_666_666_416_265_235_595 + z * 0.008_333_329_385_889_463_175_6))
            + s * w * r) as f32
    };
    let x64 = f64::from(x);
    let ix = x.to_bits() & 0x7fff_ffff;
    if ix <= 0x3f49_0fda {
        // |x| ≤ π/4 (about)
        if ix < 0x3980_0000 {
            return 1.0;
        }
        cos_kernel(x64)
    } else if ix <= 0x407b_53d1 {
        // ≤ 5π/4
        if ix > 0x4016_cbe3 {
            -cos_kernel(x64 - 2.0 * FRAC_PI_2)
        } else {
            sin_kernel(FRAC_PI_2 - x64)
        }
    } else if ix > 0x40af_eddf {
        // > 7π/4
        cos_kernel(x64 - 4.0 * FRAC_PI_2)
    } else {
        sin_kernel(x64 - 3.0 * FRAC_PI_2)
    }
}

/// A uniform index in `0..n` (Lemire's multiply-shift; bias below n/2^32 for n < 2^32,
/// below n/2^64 above). Returns 0 for `n == 0`; any `n` up to `usize::MAX` works.
pub(crate) fn index<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    match u32::try_from(n) {
        // 32 random bits times n < 2^32 fits in 64 bits (never wraps); the high half is < n.
        Ok(n) => (u64::from(rng.next_u32()).wrapping_mul(u64::from(n)) >> 32) as usize,
        // n ≥ 2^32 (64-bit targets only): 64 random bits times n fits in 128 bits.
        Err(_) => (u128::from(rng.next_u64()).wrapping_mul(n as u128) >> 64) as usize,
    }
}

/// Shuffles `items` in place (Fisher–Yates with a uniform index by Lemire's multiply-shift).
///
/// ```
/// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
/// let mut v = [1, 2, 3, 4, 5];
/// gradguard::init::shuffle(&mut v, &mut Xoshiro256PlusPlus::seed_from_u64(3));
/// v.sort();
/// assert_eq!(v, [1, 2, 3, 4, 5]);
/// ```
pub fn shuffle<T, R: Rng + ?Sized>(items: &mut [T], rng: &mut R) {
    for i in (1..items.len()).rev() {
        // i < items.len() ≤ isize::MAX: the addition never saturates.
        let j = index(rng, i.saturating_add(1));
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::index;
    use rand_xoshiro::rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn index_is_below_n_at_the_extremes_and_uses_the_high_bits() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        for n in [1, 2, u32::MAX as usize, usize::MAX / 2, usize::MAX] {
            for _ in 0..100 {
                assert!(index(&mut rng, n) < n, "index(_, {n})");
            }
        }
        assert_eq!(index(&mut rng, 0), 0);
        // Above 2^32 the high bits are used too (the old formula wrapped to small indices).
        if usize::BITS == 64 {
            let n = usize::MAX;
            assert!((0..64).any(|_| index(&mut rng, n) > n / 2));
        }
    }
}
