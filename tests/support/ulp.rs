//! Distance in ulp, for the tests' accuracy bounds.

/// Distance in ulp between two f32 values: the number of representable f32 values between
/// them (0 when equal, and between +0 and −0). `u32::MAX` when either is NaN.
pub fn ulp_distance(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return u32::MAX;
    }
    // Map the bit patterns to a monotone integer line, −0 and +0 both at 0.
    fn ordered(v: f32) -> i64 {
        let bits = v.to_bits();
        let magnitude = i64::from(bits & 0x7fff_ffff);
        if bits >> 31 == 1 {
            -magnitude
        } else {
            magnitude
        }
    }
    let d = (ordered(a) - ordered(b)).unsigned_abs();
    u32::try_from(d).unwrap_or(u32::MAX)
}
