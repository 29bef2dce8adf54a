//! Activations and derivatives on arbitrary f32 bit patterns, with their invariants
//! asserted inside the target, and the slice kernels of every available backend against
//! the scalar functions, bit for bit (NaN payloads aside). Run:
//! `cargo +nightly fuzz run activations`.
#![no_main]

#[macro_use]
#[path = "../../tests/support/activations.rs"]
mod registry;

use gradguard::kernels::{Backend, Isa};
use gradguard::math;
use gradguard::{Elementwise, Elu, LeakyRelu, Relu, Softsign};
use libfuzzer_sys::fuzz_target;

fn canonical(v: f32) -> u32 {
    if v.is_nan() {
        0x7fc0_0000
    } else {
        v.to_bits()
    }
}

/// f, f' and dy·f' over the whole slice on every backend equal the scalar functions.
fn slices_agree<A: Elementwise>(a: A, z: &[f32]) {
    let n = z.len();
    let dy: Vec<f32> = z.iter().rev().copied().collect();
    for backend in Backend::available() {
        // Each backend passed explicitly, as its token.
        let isa = backend.isa().expect("available");
        let (mut f, mut d, mut g) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        isa.activation_forward(&a, z, &mut f);
        isa.activation_derivative(&a, z, &mut d);
        isa.activation_backward(&a, z, &dy, &mut g);
        for k in 0..n {
            let x = z[k];
            assert_eq!(
                canonical(f[k]),
                canonical(a.value(x)),
                "{} f({x:e}) {backend:?}",
                A::NAME
            );
            assert_eq!(
                canonical(d[k]),
                canonical(a.derivative(x)),
                "{} f'({x:e})",
                A::NAME
            );
            assert_eq!(
                canonical(g[k]),
                canonical(dy[k] * a.derivative(x)),
                "{} dz",
                A::NAME
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let z: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    each_elementwise!(a => slices_agree(a, &z));
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
