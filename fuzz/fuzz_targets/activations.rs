//! Activations and derivatives on arbitrary f32 bit patterns, with their invariants
//! asserted inside the target. Run: `cargo +nightly fuzz run activations`.
#![no_main]

use gradguard::math;
use gradguard::{Elementwise, Elu, LeakyRelu, Relu, Softsign};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(4) {
        let x = f32::from_bits(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        let (s, t) = (math::sigmoid_derivative(x), math::tanh_derivative(x));
        if x.is_nan() {
            assert!(s.is_nan() && t.is_nan());
            continue;
        }
        assert!((0.0..=0.25).contains(&s));
        assert!((0.0..=1.0).contains(&t));
        assert_eq!(s.to_bits(), math::sigmoid_derivative(-x).to_bits());
        assert_eq!(t.to_bits(), math::tanh_derivative(-x).to_bits());
        if x.abs() <= 87.0 {
            assert!(s.is_normal());
        }
        assert!((0.0..=1.0).contains(&math::sigmoid(x)));
        assert!((-1.0..=1.0).contains(&math::tanh(x)));
        let r = Relu.derivative(x);
        assert!(r == 0.0 || r == 1.0);
        let l = LeakyRelu::new(0.01).derivative(x);
        assert!(l == 0.01 || l == 1.0);
        assert!(Elu::new(1.0).derivative(x) >= 0.0);
        assert!((0.0..=1.0).contains(&Softsign.derivative(x)));
    }
});
