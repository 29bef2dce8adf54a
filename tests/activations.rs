//! Property tests of the activations and their derivatives (≥ 100 000 cases per property).
//! The same properties hold over every f32 in `tests/exhaustive.rs` (run with
//! `cargo test --release -- --ignored`).

use gradguard::kernels;
use gradguard::math;

#[path = "support/ulp.rs"]
mod ulp;
#[macro_use]
#[path = "support/activations.rs"]
mod registry;

use gradguard::{Activation, Elementwise, Elu, LeakyRelu, Relu, Sigmoid, Softmax, Softsign, Tanh};
use proptest::prelude::*;
use ulp::ulp_distance;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 100_000,
        ..ProptestConfig::default()
    }
}

/// Any f32 bit pattern, with extra weight on the regions where the properties are tight.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<u32>().prop_map(f32::from_bits),
        (-120.0f32..120.0),
        (-1e-3f32..1e-3),
        (16.0f32..17.5),
        (86.0f32..105.0),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sigmoid_derivative_is_bounded_symmetric_and_nan_preserving(x in any_f32()) {
        let d = math::sigmoid_derivative(x);
        if x.is_nan() {
            prop_assert!(d.is_nan());
        } else {
            prop_assert!((0.0..=0.25).contains(&d), "σ'({x:e}) = {d:e}");
            prop_assert_eq!(d.to_bits(), math::sigmoid_derivative(-x).to_bits());
            if x.abs() <= 87.0 {
                prop_assert!(d.is_normal(), "σ'({x:e}) = {d:e} is not normal");
            }
            let r = math::sigmoid_derivative_reference(x);
            if d.is_normal() {
                prop_assert!(ulp_distance(d, r) <= 4, "σ'({x:e}): {d:e} vs {r:e}");
            }
        }
    }

    #[test]
    fn tanh_derivative_is_bounded_symmetric_and_nan_preserving(x in any_f32()) {
        let d = math::tanh_derivative(x);
        if x.is_nan() {
            prop_assert!(d.is_nan());
        } else {
            prop_assert!((0.0..=1.0).contains(&d), "tanh'({x:e}) = {d:e}");
            prop_assert_eq!(d.to_bits(), math::tanh_derivative(-x).to_bits());
            if x.abs() <= 43.0 {
                prop_assert!(d.is_normal(), "tanh'({x:e}) = {d:e} is not normal");
            }
            let r = math::tanh_derivative_reference(x);
            if d.is_normal() {
                prop_assert!(ulp_distance(d, r) <= 4, "tanh'({x:e}): {d:e} vs {r:e}");
            }
        }
    }

    #[test]
    fn reference_derivatives_do_not_increase_with_magnitude(x in any_f32(), y in any_f32()) {
        prop_assume!(!x.is_nan() && !y.is_nan());
        let (small, large) = if x.abs() <= y.abs() { (x, y) } else { (y, x) };
        prop_assert!(math::sigmoid_derivative_reference(large) <= math::sigmoid_derivative_reference(small));
        prop_assert!(math::tanh_derivative_reference(large) <= math::tanh_derivative_reference(small));
    }

    #[test]
    fn sigmoid_and_tanh_match_f64_within_their_bounds(x in any_f32()) {
        prop_assume!(!x.is_nan());
        let xd = f64::from(x);
        let s = (1.0 / (1.0 + (-xd).exp())) as f32;
        prop_assert!(ulp_distance(math::sigmoid(x), s) <= 3, "σ({x:e})");
        prop_assert!(ulp_distance(math::tanh(x), xd.tanh() as f32) <= 3, "tanh({x:e})");
    }

    #[test]
    fn relu_and_leaky_derivatives_are_steps(x in any_f32(), alpha in 0.001f32..0.5) {
        prop_assume!(!x.is_nan());
        let d = Relu.derivative(x);
        prop_assert!(d == 0.0 || d == 1.0);
        prop_assert_eq!(d == 1.0, x > 0.0);
        let leaky = LeakyRelu::new(alpha);
        let l = leaky.derivative(x);
        prop_assert!(l == alpha || l == 1.0);
        prop_assert_eq!(l == 1.0, x > 0.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_without_nan(row in proptest::collection::vec(-3e38f32..3e38, 1..40), scale in prop_oneof![Just(1.0f32), Just(1e-30), Just(1e-3)]) {
        let z: Vec<f32> = row.iter().map(|v| v * scale).collect();
        let mut a = vec![0.0; z.len()];
        Softmax.forward(&z, &mut a);
        prop_assert!(a.iter().all(|v| !v.is_nan() && (0.0..=1.0).contains(v)));
        let sum: f64 = a.iter().map(|&v| f64::from(v)).sum();
        prop_assert!((sum - 1.0).abs() <= 1e-6, "sum = {sum}");
    }
}

#[test]
fn exact_values_at_zero() {
    assert_eq!(math::sigmoid_derivative(0.0), 0.25);
    assert_eq!(math::sigmoid_derivative(-0.0), 0.25);
    assert_eq!(math::tanh_derivative(0.0), 1.0);
    assert_eq!(math::sigmoid(0.0), 0.5);
    assert_eq!(Relu.derivative(0.0), 0.0);
    assert_eq!(Relu.derivative(-0.0), 0.0);
    assert_eq!(LeakyRelu::new(0.2).derivative(0.0), 0.2);
    assert_eq!(LeakyRelu::new(0.01).derivative(-0.0), 0.01);
    assert_eq!(Elu::new(0.5).derivative(0.0), 0.5);
    assert_eq!(Softsign.derivative(0.0), 1.0);
}

#[test]
fn pre_activation_forms_avoid_the_textbook_false_zeros() {
    // The thresholds named in the docs: from-output forms are exactly 0 there...
    assert_eq!(
        math::sigmoid_derivative_from_output(math::sigmoid(16.64)),
        0.0
    );
    assert_eq!(math::tanh_derivative_from_output(math::tanh(9.02)), 0.0);
    // ...just below them they are not...
    assert!(math::sigmoid_derivative_from_output(math::sigmoid(16.5)) > 0.0);
    assert!(math::tanh_derivative_from_output(math::tanh(9.0)) > 0.0);
    // ...while the true values (≈ 6e-8) are normal and the crate's forms return them.
    let s = math::sigmoid_derivative(16.64);
    assert!(s.is_normal() && (s - 5.9e-8).abs() < 1e-9, "{s:e}");
    let t = math::tanh_derivative(9.01);
    assert!(t.is_normal() && (t - 5.97e-8).abs() < 1e-9, "{t:e}");
}

#[test]
fn every_derivative_propagates_nan() {
    let nan = f32::NAN;
    assert!(Sigmoid.derivative(nan).is_nan());
    assert!(Tanh.derivative(nan).is_nan());
    assert!(Relu.derivative(nan).is_nan());
    assert!(LeakyRelu::new(0.1).derivative(nan).is_nan());
    assert!(Elu::new(1.0).derivative(nan).is_nan());
    assert!(Softsign.derivative(nan).is_nan());
    assert!(gradguard::Identity.derivative(nan).is_nan());
    assert!(Relu.value(nan).is_nan() && LeakyRelu::new(0.1).value(nan).is_nan());
    let mut a = [0.0; 3];
    Softmax.forward(&[1.0, nan, 2.0], &mut a);
    assert!(a.iter().all(|v| v.is_nan()));
}

#[test]
fn infinities_give_the_limits() {
    let inf = f32::INFINITY;
    assert_eq!(math::sigmoid(inf), 1.0);
    assert_eq!(math::sigmoid(-inf), 0.0);
    assert_eq!(math::tanh(-inf), -1.0);
    assert_eq!(math::sigmoid_derivative(inf), 0.0);
    assert_eq!(math::tanh_derivative(-inf), 0.0);
    assert_eq!(Softsign.value(-inf), -1.0);
    assert_eq!(Softsign.derivative(inf), 0.0);
    assert_eq!(Elu::new(2.0).value(-inf), -2.0);
}

#[test]
fn slice_forms_match_scalar_forms() {
    let z: Vec<f32> = (-40..40).map(|k| k as f32 * 0.37).collect();
    let dy: Vec<f32> = (0..80).map(|k| 1.0 - k as f32 * 0.01).collect();
    fn check<A: Elementwise>(f: A, z: &[f32], dy: &[f32]) {
        let (mut a, mut dz) = (vec![0.0; z.len()], vec![0.0; z.len()]);
        Activation::forward(&f, z, &mut a);
        Activation::backward(&f, z, &a, dy, &mut dz);
        for k in 0..z.len() {
            assert_eq!(a[k].to_bits(), f.value(z[k]).to_bits());
            assert_eq!(dz[k].to_bits(), (dy[k] * f.derivative(z[k])).to_bits());
        }
    }
    each_elementwise!(a => check(a, &z, &dy));
}

/// The one-pass value and derivative are the two passes' bits, over every 97th f32 bit
/// pattern (44 million inputs: every exponent, NaNs, infinities, subnormals), on the active
/// backend; `tests/backends.rs` compares the backends with each other.
#[test]
fn value_and_derivative_in_one_pass_are_the_two_passes_bit_for_bit() {
    let z: Vec<f32> = (0..=u32::MAX / 97)
        .map(|k| f32::from_bits(k * 97))
        .collect();
    let n = z.len();
    let (mut a, mut d, mut a2, mut d2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    fn check<A: Elementwise>(f: A, z: &[f32], bufs: [&mut Vec<f32>; 4]) {
        let [a, d, a2, d2] = bufs;
        kernels::activation_forward(&f, z, a);
        kernels::activation_derivative(&f, z, d);
        kernels::activation_forward_and_derivative(&f, z, a2, d2);
        let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
        assert!(bits(a) == bits(a2), "{}: values differ", A::NAME);
        assert!(bits(d) == bits(d2), "{}: derivatives differ", A::NAME);
    }
    each_elementwise!(f => check(f, &z, [&mut a, &mut d, &mut a2, &mut d2]));
}

#[test]
fn softmax_backward_is_the_jacobian_vector_product() {
    let z = [0.3f32, -1.2, 2.0, 0.0];
    let dy = [0.5f32, -1.0, 0.25, 2.0];
    let mut a = [0.0; 4];
    let mut dz = [0.0; 4];
    Softmax.forward(&z, &mut a);
    Softmax.backward(&z, &a, &dy, &mut dz);
    for i in 0..4 {
        let mut expected = 0.0f64;
        for j in 0..4 {
            let (ai, aj) = (f64::from(a[i]), f64::from(a[j]));
            let jac = if i == j { ai * (1.0 - ai) } else { -ai * aj };
            expected += jac * f64::from(dy[j]);
        }
        assert!(
            (f64::from(dz[i]) - expected).abs() < 1e-6,
            "{i}: {} vs {expected}",
            dz[i]
        );
    }
}

/// Witnesses of why the fast form is s·(1 − s) with s = σ(−|x|): the textbook-accurate
/// e/(1+e)² (libm `expf`) exceeds 1/4 near x = 3.45e-4 and reverses monotonicity, as the
/// exhaustive sweep in the README found millions of times.
#[test]
fn textbook_derivative_breaks_the_bound_and_monotonicity_where_ours_does_not() {
    fn textbook(x: f32) -> f32 {
        let e = libm::expf(-x.abs());
        e / ((1.0 + e) * (1.0 + e))
    }
    let above: Vec<f32> = (0..20_000u32)
        .map(|k| f32::from_bits(3.44e-4f32.to_bits() + k))
        .filter(|&x| textbook(x) > 0.25)
        .collect();
    assert!(
        !above.is_empty(),
        "libm expf no longer shows the effect; update the docs"
    );
    for &x in &above {
        assert!(math::sigmoid_derivative(x) <= 0.25);
        assert!(math::sigmoid_derivative_reference(x) <= 0.25);
    }
    // A monotonicity reversal of the textbook form (found by the sweep), which the
    // reference does not have.
    let (a, b) = (0.001_000_039_9_f32, 0.001_000_04_f32);
    assert_eq!(b.to_bits(), a.to_bits() + 1);
    assert!(textbook(b) > textbook(a));
    assert!(math::sigmoid_derivative_reference(b) <= math::sigmoid_derivative_reference(a));
}
