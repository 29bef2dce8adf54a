//! Gradient health with known answers.

use gradguard::datasets::digits;
use gradguard::health::{classify, FloatClass, HealthConfig, HealthReport, TensorStats};
use gradguard::init::{standard_normal, Init};
use gradguard::{
    Chain, Dense, GradMode, Layer, Parameters, Relu, Seq, Sgd, Sigmoid, Tanh, Workspace, Zeroed,
};
use proptest::prelude::*;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const MIN_NORMAL: f64 = 1.1754943508222875e-38; // 2^-126

#[test]
fn injected_special_values_are_counted_exactly() {
    let v = [
        0.0,
        -0.0,
        1e-40,
        -1e-45,
        f32::MIN_POSITIVE,
        1.0,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e38,
        2e-39,
    ];
    let s = TensorStats::of(&v);
    assert_eq!(
        (
            s.counts.zero,
            s.counts.subnormal,
            s.counts.normal,
            s.counts.infinite,
            s.counts.nan
        ),
        (2, 3, 4, 2, 1)
    );
    assert_eq!(s.len(), v.len() as u64);
    assert_eq!(s.max_abs, 3e38);
    assert_eq!(s.min_nonzero_abs, 1e-45);
    let finite: Vec<f64> = v
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x))
        .collect();
    let norm = finite.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((f64::from(s.l2_norm()) / norm - 1.0).abs() < 1e-6);
    let mean = finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len() as f64;
    assert!((f64::from(s.mean_abs()) / mean - 1.0).abs() < 1e-6);
    assert_eq!(classify(1e-45), FloatClass::Subnormal);
}

#[test]
fn norms_neither_underflow_nor_overflow() {
    let n = 1000;
    let tiny = TensorStats::of(&vec![1e-30f32; n]);
    assert!((f64::from(tiny.l2_norm()) / (1e-30 * (n as f64).sqrt()) - 1.0).abs() < 1e-5);
    let huge = TensorStats::of(&vec![1e30f32; n]);
    assert!((f64::from(huge.l2_norm()) / (1e30 * (n as f64).sqrt()) - 1.0).abs() < 1e-5);
    let sub = TensorStats::of(&[1e-40f32; 4]);
    assert!((f64::from(sub.l2_norm()) / (2.0 * f64::from(1e-40f32)) - 1.0).abs() < 1e-3);
    let over = TensorStats::of(&[3e38f32; 4]);
    assert_eq!(over.l2_norm(), f32::INFINITY, "6e38 does not fit in f32");
    assert_eq!(over.mean_abs(), 3e38);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn counts_always_sum_to_the_length(bits in proptest::collection::vec(any::<u32>(), 0..200)) {
        let v: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let s = TensorStats::of(&v);
        prop_assert_eq!(s.len() as usize, v.len());
        let by_hand = v.iter().filter(|x| x.is_nan()).count();
        prop_assert_eq!(s.counts.nan as usize, by_hand);
        let subnormal = v.iter().filter(|x| x.is_subnormal()).count();
        prop_assert_eq!(s.counts.subnormal as usize, subnormal);
    }

    #[test]
    fn scaling_by_a_power_of_two_scales_norm_max_and_min_exactly(
        v in proptest::collection::vec(prop_oneof![1e-25f32..1e25, -1e25f32..-1e-25], 1..100),
        k in -40i32..40,
    ) {
        let factor = 2f32.powi(k);
        let scaled: Vec<f32> = v.iter().map(|x| x * factor).collect();
        let (a, b) = (TensorStats::of(&v), TensorStats::of(&scaled));
        prop_assert_eq!(b.max_abs, a.max_abs * factor);
        prop_assert_eq!(b.min_nonzero_abs, a.min_nonzero_abs * factor);
        prop_assert_eq!(b.l2_norm(), a.l2_norm() * factor);
        prop_assert_eq!(b.mean_abs(), a.mean_abs() * factor);
    }
}

// A chain of single sigmoid units, composed by doubling: 128 layers.
type Unit = Dense<1, 1, Sigmoid>;
type C2 = Seq![Unit, Unit];
type C4 = Chain<C2, C2>;
type C8 = Chain<C4, C4>;
type C16 = Chain<C8, C8>;
type C32 = Chain<C16, C16>;
type C64 = Chain<C32, C32>;
type C128 = Chain<C64, C64>;

/// Hochreiter: in a chain of sigmoid units with weight w the gradient reaching depth d
/// below the output is at most (|w|/4)^d·(1/|w|). The report must flag Underflow at exactly
/// the layer where f32 arithmetic predicts it: the first (from the output) where a product
/// it forms, dz = dy·σ'(z) or dz·a, falls below 2^-126.
#[test]
fn sigmoid_chain_is_bounded_and_flags_underflow_at_the_predicted_depth() {
    const DEPTH: usize = 128;
    for (w, x0) in [(1.0f32, 0.0f32), (2.0, 0.5), (-1.5, 1.0)] {
        let net = C128::default();
        let mut p = Box::new(<C128 as Layer>::Params::ZEROED);
        for i in 0..<<C128 as Layer>::Params as Parameters>::TENSORS {
            if i % 2 == 0 {
                p.tensor_mut(i)[0] = w;
            }
        }
        let x = [[x0]];
        let mut cache = Box::new(<C128 as Layer>::Cache::<1>::ZEROED);
        net.forward(&p, &x, &mut cache);
        let mut g = Box::new(<C128 as Layer>::Params::ZEROED);
        let mut report = Box::new(HealthReport::<DEPTH>::new(HealthConfig::DEFAULT));
        net.backward_observed(
            &p,
            &x,
            &mut cache,
            &[[1.0]],
            &mut g,
            None,
            GradMode::Overwrite,
            &mut *report,
        );

        // The same chain in f64.
        let (mut z, mut a) = (vec![0.0f64; DEPTH], vec![0.0f64; DEPTH + 1]);
        a[0] = f64::from(x0);
        for l in 0..DEPTH {
            z[l] = f64::from(w) * a[l];
            a[l + 1] = 1.0 / (1.0 + (-z[l]).exp());
        }
        let mut dy = 1.0f64;
        let mut predicted = None;
        for l in (0..DEPTH).rev() {
            let s = a[l + 1];
            let dz = dy * s * (1.0 - s);
            let depth = (DEPTH - l) as i32;
            let bound = (f64::from(w.abs()) / 4.0).powi(depth) / f64::from(w.abs());
            let ours = f64::from(report.layer(l as u16).unwrap().pre_activation_grad.max_abs);
            assert!(
                ours <= bound * (1.0 + 1e-4),
                "w={w}: layer {l}: {ours:e} > bound {bound:e}"
            );
            let smallest = dz.abs().min((dz * a[l]).abs());
            if predicted.is_none() && smallest < MIN_NORMAL {
                // Stay clear of the boundary so f32 rounding cannot decide the outcome.
                assert!(
                    (smallest / MIN_NORMAL - 1.0).abs() > 1e-3,
                    "ambiguous test setup"
                );
                predicted = Some(l as u16);
            }
            dy = dz * f64::from(w);
        }
        let flags = report.flags();
        assert!(
            predicted.is_some(),
            "w={w}: the chain never underflows; make it deeper"
        );
        assert_eq!(flags.underflow, predicted, "w={w}, x0={x0}");
        assert_eq!(
            flags.vanishing,
            Some(flags.vanishing.unwrap()),
            "a 128-deep chain vanishes"
        );
        let first = report.layer(predicted.unwrap()).unwrap();
        assert!(first.underflow_count() > 0);
        let above = report.layer(predicted.unwrap() + 1).unwrap();
        assert_eq!(
            above.underflow_count(),
            0,
            "nothing underflows closer to the output"
        );
    }
}

fn first_batch_report<L>(init: Init) -> HealthReport<10>
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let net = L::default();
    let mut p = Box::new(L::Params::ZEROED);
    net.init(&mut p, init, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    let mut g = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, 32>::ZEROED);
    let mut report = HealthReport::<10>::new(HealthConfig::DEFAULT);
    digits::gradient_health(
        &net,
        &p,
        &mut g,
        &mut workspace,
        &digits::TRAIN,
        &mut report,
    )
    .unwrap();
    report
}

type Sig = Dense<32, 32, Sigmoid>;
type DeepSigmoid =
    Seq![Dense<64, 32, Sigmoid>, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Dense<32, 10>];
type Rl = Dense<32, 32, Relu>;
type DeepRelu = Seq![Dense<64, 32, Relu>, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Dense<32, 10>];

#[test]
fn deep_sigmoid_with_xavier_is_flagged_vanishing_and_relu_with_he_is_not() {
    let sigmoid = first_batch_report::<DeepSigmoid>(Init::XavierNormal);
    let layers = sigmoid.layers_from_output();
    assert_eq!(layers.len(), 10);
    let ratio = layers[9].weight_grad.l2_norm() / layers[0].weight_grad.l2_norm();
    println!("{sigmoid}\nsigmoid/Xavier: ‖dW₁‖/‖dW₁₀‖ = {ratio:e}");
    assert!(ratio < 1e-4, "ratio {ratio:e}");
    assert!(sigmoid.flags().vanishing.is_some());

    let relu = first_batch_report::<DeepRelu>(Init::HeNormal);
    let layers = relu.layers_from_output();
    let ratio = layers[9].weight_grad.l2_norm() / layers[0].weight_grad.l2_norm();
    println!("{relu}\nrelu/He: ‖dW₁‖/‖dW₁₀‖ = {ratio:e}");
    assert!(ratio > 1e-2, "ratio {ratio:e}");
    assert_eq!(relu.flags().vanishing, None);
    assert_eq!(relu.flags().underflow, None);
}

#[test]
fn a_unit_killed_by_a_negative_bias_is_dead_and_a_fed_sigmoid_is_saturated_not_zero() {
    // ReLU: unit 1 has bias −100, so z < 0 for every sample.
    type R = Seq![Dense<4, 3, Relu>, Dense<3, 2>];
    let net = R::default();
    let mut p = <R as Layer>::Params::ZEROED;
    net.init(
        &mut p,
        Init::HeNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(4),
    );
    p.first.bias[1] = -100.0;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut x = [[0.0f32; 4]; 16];
    x.iter_mut()
        .flatten()
        .for_each(|v| *v = standard_normal(&mut rng));
    let mut cache = <R as Layer>::Cache::<16>::ZEROED;
    net.forward(&p, &x, &mut cache);
    let mut g = <R as Layer>::Params::ZEROED;
    let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
    net.backward_observed(
        &p,
        &x,
        &mut cache,
        &[[1.0, -1.0]; 16],
        &mut g,
        None,
        GradMode::Overwrite,
        &mut report,
    );
    assert_eq!(report.layer(0).unwrap().dead_units, 1);
    assert_eq!(report.flags().dead_units, Some(0));
    assert_eq!(
        report.flags().underflow,
        None,
        "a dead ReLU is a structural zero, not underflow"
    );
    assert!(report.layer(0).unwrap().pre_activation_structural_zeros >= 16);

    // Sigmoid fed |z| ≈ 50: saturated, yet every derivative is a normal number.
    type S = Seq![Dense<2, 3, Sigmoid>, Dense<3, 1>];
    let net = S::default();
    let mut p = <S as Layer>::Params::ZEROED;
    p.first.weights = [[50.0, 0.0], [0.0, -50.0], [25.0, 25.0]];
    p.second.weights = [[1.0, 1.0, 1.0]];
    let x = [[1.0, 1.0], [-1.0, -1.0], [1.02, 0.98]];
    let mut cache = <S as Layer>::Cache::<3>::ZEROED;
    net.forward(&p, &x, &mut cache);
    let mut g = <S as Layer>::Params::ZEROED;
    let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
    net.backward_observed(
        &p,
        &x,
        &mut cache,
        &[[1.0]; 3],
        &mut g,
        None,
        GradMode::Overwrite,
        &mut report,
    );
    let first = report.layer(0).unwrap();
    assert_eq!(first.saturated_units, 3);
    assert_eq!(report.flags().saturated, Some(0));
    assert!(cache
        .first
        .pre_activation_grad
        .iter()
        .flatten()
        .all(|v| v.is_normal()));
    assert_eq!(first.pre_activation_grad.counts.normal, 9);
    assert_eq!(
        first.underflow_count(),
        0,
        "σ'(±50) ≈ 2e-22 is small but normal"
    );
}

/// A brute-force count of the products `g·v` of nonzero finite factors that underflow, to
/// compare with the screened counting: zero, or subnormal and inexact (the exact product
/// of two f32 fits in f64).
fn brute_force_pairs(pairs: impl Iterator<Item = (f32, f32)>) -> (u64, u64) {
    let (mut sub, mut zero) = (0, 0);
    for (g, v) in pairs {
        if g != 0.0 && v != 0.0 && g.is_finite() && v.is_finite() {
            let p = g * v;
            zero += u64::from(p == 0.0);
            let exact = f64::from(g) * f64::from(v);
            sub += u64::from(p.is_subnormal() && f64::from(p) != exact);
        }
    }
    (sub, zero)
}

/// The products dz·x feeding dW.
fn brute_force_products<const IN: usize, const OUT: usize, const B: usize>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
) -> (u64, u64) {
    brute_force_pairs(dz.iter().zip(x).flat_map(|(dzs, xs)| {
        dzs.iter()
            .flat_map(move |&g| xs.iter().map(move |&v| (g, v)))
    }))
}

/// The products dz·w feeding dX.
fn brute_force_input_products<const IN: usize, const OUT: usize, const B: usize>(
    dz: &[[f32; OUT]; B],
    w: &[[f32; IN]; OUT],
) -> (u64, u64) {
    brute_force_pairs(dz.iter().flat_map(|dzs| {
        dzs.iter()
            .zip(w.iter())
            .flat_map(|(&g, wo)| wo.iter().map(move |&v| (g, v)))
    }))
}

fn adversarial() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -2.0f32..2.0,
        2 => (-30.0f32..-10.0).prop_map(|e| 10f32.powf(e)),
        1 => (-45.0f32..-37.0).prop_map(|e| -(10f32.powf(e))),
        1 => Just(0.0f32),
        1 => prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(1e38f32), Just(1e-45f32)],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Tracking changes no value (bit for bit), and its product counts equal a brute-force
    /// count on the same dz and x.
    #[test]
    fn tracking_is_bit_identical_and_counts_products_exactly(
        w in proptest::collection::vec(adversarial(), 5 * 4 + 4 * 3),
        x in proptest::collection::vec(adversarial(), 5 * 3),
        dy in proptest::collection::vec(adversarial(), 3 * 3),
    ) {
        type N = Seq![Dense<5, 4, Tanh>, Dense<4, 3, Sigmoid>];
        let net = N::default();
        let mut p = <N as Layer>::Params::ZEROED;
        let mut k = 0;
        for i in [0usize, 2] {
            for v in p.tensor_mut(i) { *v = w[k]; k += 1; }
        }
        let xb: [[f32; 5]; 3] = core::array::from_fn(|s| core::array::from_fn(|i| x[s * 5 + i]));
        let dyb: [[f32; 3]; 3] = core::array::from_fn(|s| core::array::from_fn(|o| dy[s * 3 + o]));
        let mut c1 = <N as Layer>::Cache::<3>::ZEROED;
        net.forward(&p, &xb, &mut c1);
        let mut c2 = c1;
        let (mut g1, mut g2) = (<N as Layer>::Params::ZEROED, <N as Layer>::Params::ZEROED);
        let (mut dx1, mut dx2) = ([[0.0f32; 5]; 3], [[0.0f32; 5]; 3]);
        net.backward(&p, &xb, &mut c1, &dyb, &mut g1, Some(&mut dx1), GradMode::Overwrite);
        let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
        net.backward_observed(&p, &xb, &mut c2, &dyb, &mut g2, Some(&mut dx2), GradMode::Overwrite, &mut report);
        // Bit for bit, except NaN payloads and signs, which Rust leaves unspecified.
        let bits = |v: &f32| if v.is_nan() { 0x7fc0_0000 } else { v.to_bits() };
        for i in 0..<<N as Layer>::Params as Parameters>::TENSORS {
            let a: Vec<u32> = g1.tensor(i).iter().map(bits).collect();
            let b: Vec<u32> = g2.tensor(i).iter().map(bits).collect();
            prop_assert_eq!(a, b);
        }
        let a: Vec<u32> = dx1.as_flattened().iter().map(bits).collect();
        let b: Vec<u32> = dx2.as_flattened().iter().map(bits).collect();
        prop_assert_eq!(a, b);
        let second = report.layer(1).unwrap();
        let (sub, zero) = brute_force_products(&c2.second.pre_activation_grad, &c2.first.output);
        prop_assert_eq!((second.weight_products_became_subnormal, second.weight_products_became_zero), (sub, zero));
        let first = report.layer(0).unwrap();
        let (sub, zero) = brute_force_products(&c2.first.pre_activation_grad, &xb);
        prop_assert_eq!((first.weight_products_became_subnormal, first.weight_products_became_zero), (sub, zero));
        let (sub, zero) = brute_force_input_products(&c2.second.pre_activation_grad, &p.second.weights);
        prop_assert_eq!((second.input_products_became_subnormal, second.input_products_became_zero), (sub, zero));
        let (sub, zero) = brute_force_input_products(&c2.first.pre_activation_grad, &p.first.weights);
        prop_assert_eq!((first.input_products_became_subnormal, first.input_products_became_zero), (sub, zero));
        let total = first.weight_grad.len();
        prop_assert_eq!(total, 20);
    }
}

#[test]
fn the_report_prints_a_table_and_the_fpu_mode() {
    let report = first_batch_report::<DeepSigmoid>(Init::XavierNormal);
    let text = format!("{report}");
    assert!(text.contains("Vanishing(layer"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("sigmoid")).count(), 9);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        gradguard::kernels::subnormal_mode(),
        gradguard::kernels::SubnormalMode::Preserved
    );
}

include!("data/health_cases.rs");

/// Runs the shared case `name` (the firmware runs the same list).
fn health_case(name: &str) {
    let (_, case) = health_cases::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a case of that name");
    if let Err(what) = case() {
        panic!("{name}: {what}");
    }
}

/// Cancellation is not underflow: a class-balanced batch whose output db is exactly 0
/// raises no Underflow (the case the firmware runs too, `tests/data/health_cases.rs`).
#[test]
fn a_balanced_batch_whose_output_bias_gradient_cancels_raises_no_underflow() {
    health_case("balanced_batch_cancellation_is_not_underflow");
}

/// A layer whose ReLU units are all dead raises DeadUnits and no Underflow downstream.
#[test]
fn an_all_dead_relu_layer_raises_dead_units_and_no_underflow_downstream() {
    health_case("all_dead_relu_layer_raises_no_underflow");
}

/// A product that truly underflows is flagged at its layer, in dW and in dX; an exact
/// subnormal product is not an underflow.
#[test]
fn a_product_that_truly_underflows_is_flagged_at_its_layer() {
    health_case("true_product_underflow_is_flagged_at_its_layer");
}

/// The report of the first digits batch of `L` with N(0, 0.01²) weights (the textbook
/// mistake), for a step with learning rate 0.1.
fn tiny_init_report<L>() -> HealthReport<10>
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let net = L::default();
    let mut p = Box::new(L::Params::ZEROED);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
    for i in (0..<L::Params as Parameters>::TENSORS).step_by(2) {
        for w in p.tensor_mut(i) {
            *w = 0.01 * standard_normal(&mut rng);
        }
    }
    let mut g = Box::new(L::Params::ZEROED);
    let mut ws = Box::new(Workspace::<L, 32>::ZEROED);
    let mut report = HealthReport::<10>::new(HealthConfig::DEFAULT);
    digits::gradient_health(&net, &p, &mut g, &mut ws, &digits::TRAIN, &mut report).unwrap();
    report.learning_rate = 0.1;
    report
}

type Th = Dense<32, 32, Tanh>;
type DeepTanh = Seq![Dense<64, 32, Tanh>, Th, Th, Th, Th, Th, Th, Th, Th, Dense<32, 10>];

/// The classic case a ‖dW‖ ratio misses: with std-0.01 weights a tanh net's forward signal
/// shrinks layer by layer as much as the backward one, so the output layer's own ‖dW‖ is
/// as tiny as the first layer's and their ratio stays near 1. The error signal dz reaching
/// the first layer and the update-to-weight ratio tell the truth. The sigmoid net (whose
/// activations stay near 1/2) is flagged too.
#[test]
fn deep_nets_with_tiny_weights_are_flagged_vanishing_and_stalled() {
    for (name, report) in [
        ("tanh", tiny_init_report::<DeepTanh>()),
        ("sigmoid", tiny_init_report::<DeepSigmoid>()),
    ] {
        let layers = report.layers_from_output();
        let dw_ratio = layers[9].weight_grad.l2_norm() / layers[0].weight_grad.l2_norm();
        let dz_ratio =
            layers[9].pre_activation_grad.l2_norm() / layers[0].pre_activation_grad.l2_norm();
        println!("{name}:\n{report}\n‖dW₁‖/‖dW₁₀‖ = {dw_ratio:e}, ‖dz₁‖/‖dz₁₀‖ = {dz_ratio:e}");
        assert!(
            dz_ratio < 1e-9,
            "{name}: the error signal vanishes: {dz_ratio:e}"
        );
        let flags = report.flags();
        assert!(flags.vanishing.is_some(), "{name}: {report}");
        assert!(flags.stalled.is_some(), "{name}: {report}");
        assert!(layers[9].update_ratio(0.1) < 1e-8, "{name}");
        if name == "tanh" {
            assert!(
                dw_ratio > 1e-4,
                "the dW ratio alone would miss it: {dw_ratio:e}"
            );
        }
    }
}

/// The 10-layer ReLU net with He initialisation learns: neither Vanishing nor Stalled.
#[test]
fn a_deep_relu_net_with_he_init_is_neither_vanishing_nor_stalled() {
    let mut report = first_batch_report::<DeepRelu>(Init::HeNormal);
    report.learning_rate = 0.1;
    let flags = report.flags();
    assert_eq!(flags.vanishing, None, "{report}");
    assert_eq!(flags.stalled, None, "{report}");
    assert_eq!(flags.underflow, None, "{report}");
}

/// Counters are u64 and their totals saturate instead of wrapping (a 2048×2048 layer with
/// batch 1024 makes 2^32 products).
#[test]
fn counts_saturate_instead_of_wrapping() {
    let c = gradguard::health::ClassCounts {
        zero: u64::MAX,
        subnormal: 1,
        normal: 1 << 40,
        infinite: u64::MAX,
        nan: 1,
    };
    assert_eq!((c.total(), c.non_finite()), (u64::MAX, u64::MAX));
    let mut h = gradguard::health::LayerHealth::EMPTY;
    h.weight_products_became_zero = 1 << 32;
    h.input_products_became_zero = u64::MAX;
    assert_eq!(h.underflow_count(), u64::MAX);
    h.input_products_became_zero = 0;
    assert_eq!(h.underflow_count(), 1 << 32, "2^32 is not 0");
}

/// `Trainer::step_observed` changes nothing (the parameters are those of `train_step` bit for
/// bit, with SGD and with momentum), its counts and extremes of dW are those of the
/// gradients themselves, and ‖W‖ is that of the weights the step started from; on several
/// steps, so the one-pass scales of the later steps (from the previous ‖W‖) are exercised.
#[test]
fn step_observed_reports_dw_and_w_and_changes_nothing() {
    use gradguard::{train_step, Momentum, Optimizer, SoftmaxCrossEntropy, Trainer};
    type N = Seq![Dense<16, 12, Tanh>, Dense<12, 12, Relu>, Dense<12, 3>];
    type P = <N as Layer>::Params;
    fn check<O: Optimizer<P>>(mut plain_opt: O, mut observed_opt: O) {
        let net = N::default();
        let mut p = P::ZEROED;
        net.init(
            &mut p,
            Init::HeNormal,
            &mut Xoshiro256PlusPlus::seed_from_u64(11),
        );
        let (mut q, mut g, mut h) = (p, P::ZEROED, P::ZEROED);
        let (mut w1, mut w2) = (Workspace::<N, 5>::ZEROED, Workspace::<N, 5>::ZEROED);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
        let mut report = HealthReport::<3>::new(HealthConfig::DEFAULT);
        for step in 0..4 {
            let mut x = [[0.0f32; 16]; 5];
            x.iter_mut()
                .flatten()
                .for_each(|v| *v = standard_normal(&mut rng));
            let y = [0, 1, 2, 1, 0];
            let before: Vec<f32> = (0..3)
                .map(|l| TensorStats::of(q.tensor(2 * l)).l2_norm())
                .collect();
            let a = train_step(
                &net,
                &mut p,
                &mut g,
                &mut w1,
                &mut plain_opt,
                &SoftmaxCrossEntropy,
                &x,
                &y,
            );
            let b = Trainer::new(
                &net,
                &mut q,
                &mut h,
                &mut w2,
                &mut observed_opt,
                &SoftmaxCrossEntropy,
            )
            .step_observed(&x, &y, &mut report);
            assert_eq!(a.unwrap().to_bits(), b.unwrap().to_bits());
            for i in 0..P::TENSORS {
                let same = p
                    .tensor(i)
                    .iter()
                    .zip(q.tensor(i))
                    .all(|(u, v)| u.to_bits() == v.to_bits());
                assert!(same, "step {step}: tensor {i} differs");
            }
            for layer in 0..3u16 {
                let record = report.layer(layer).unwrap();
                let dw = TensorStats::of(h.tensor(2 * usize::from(layer)));
                assert_eq!(
                    record.weight_grad.counts, dw.counts,
                    "step {step} layer {layer}"
                );
                assert_eq!(record.weight_grad.max_abs, dw.max_abs);
                assert_eq!(record.weight_grad.min_nonzero_abs, dw.min_nonzero_abs);
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs();
                assert!(close(record.weight_grad.l2_norm(), dw.l2_norm()));
                let w = before[usize::from(layer)];
                assert!(
                    close(record.weight_norm, w),
                    "step {step}: {} vs {w}",
                    record.weight_norm
                );
            }
        }
    }
    check(Sgd::new(0.05).unwrap(), Sgd::new(0.05).unwrap());
    let momentum = || Momentum::<P>::new(Sgd::new(0.05).unwrap(), 0.9).unwrap();
    check(momentum(), momentum());
}

/// ‖W‖ is taken in one pass at the scale of the previous step's norm and checked by the sum
/// itself; when the weights jump by far more than a step could move them (here by 2^-140,
/// into subnormals, then by 2^+230) the check fails and the exact passes give the norm. The
/// first layer computes no dX, so its pass skips the smallest |w| on one lane. A NaN weight
/// makes the norm NaN on every backend (the one-lane pass once reported the other weights'
/// norm).
#[test]
fn the_weight_norm_is_right_when_the_weights_jump_in_scale() {
    use gradguard::{SoftmaxCrossEntropy, Trainer};
    type N = Seq![Dense<8, 6, Relu>, Dense<6, 3>];
    type P = <N as Layer>::Params;
    let net = N::default();
    let mut p = P::ZEROED;
    net.init(
        &mut p,
        Init::HeNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(5),
    );
    let (mut g, mut ws) = (P::ZEROED, Workspace::<N, 4>::ZEROED);
    let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
    // A learning rate so small that the steps barely move the weights.
    let mut sgd = Sgd::new(f32::MIN_POSITIVE).unwrap();
    let x = [[0.5f32; 8], [-1.0; 8], [2.0; 8], [0.25; 8]];
    let y = [0, 1, 2, 1];
    for (step, factor) in [
        1.0f32,
        1.0,
        2f32.powi(-70) * 2f32.powi(-70),
        2f32.powi(115) * 2f32.powi(115),
        f32::NAN,
    ]
    .into_iter()
    .enumerate()
    {
        for l in 0..2 {
            let weights = p.tensor_mut(2 * l);
            if factor.is_nan() {
                // One NaN among finite weights.
                weights
                    .iter_mut()
                    .skip(3)
                    .take(1)
                    .for_each(|w| *w = f32::NAN);
            } else {
                weights.iter_mut().for_each(|w| *w *= factor);
            }
        }
        let exact: Vec<f64> = (0..2)
            .map(|l| {
                p.tensor(2 * l)
                    .iter()
                    .map(|&w| f64::from(w).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let r = Trainer::new(
            &net,
            &mut p,
            &mut g,
            &mut ws,
            &mut sgd,
            &SoftmaxCrossEntropy,
        )
        .step_observed(&x, &y, &mut report);
        assert!(r.is_ok(), "step {step}");
        for layer in 0..2u16 {
            let got = f64::from(report.layer(layer).unwrap().weight_norm);
            let want = exact[usize::from(layer)];
            // Relative 1e-6, or a subnormal norm's own spacing (2^-149); NaN for NaN.
            let tolerance = (1e-6 * want).max(f64::from(f32::from_bits(1)));
            assert!(
                (got - want).abs() <= tolerance || (got.is_nan() && want.is_nan()),
                "step {step} layer {layer}: {got:e} vs {want:e}"
            );
        }
    }
}
