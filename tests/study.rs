//! The vanishing-gradient study's claims (`cargo run --release --example vanishing`), checked
//! on the digits data over seeds 0..5 (30 epochs, SGD lr 0.1, batch 32): the failures and
//! their cures by batch norm. A deep net's training amplifies last-bit differences (between
//! backends, or seeds), so accuracy claims are on the median over the seeds; the flags at
//! initialisation, which do not depend on training, are checked on every seed. CI runs it
//! in release mode; it takes a few seconds there. (The sigmoid-chain bound (|w|/4)^L is
//! checked in `tests/health.rs`.)

use gradguard::datasets::digits;
use gradguard::health::{Flags, HealthConfig, HealthReport, LayerKind};
use gradguard::init::{shuffle, Init};
use gradguard::{BatchNorm, Dense, Layer, Relu, Seq, Sgd, Sigmoid, Tanh, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const SEEDS: u64 = 5;

type Sig = Dense<32, 32, Sigmoid>;
type DeepSigmoid =
    Seq![Dense<64, 32, Sigmoid>, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Dense<32, 10>];
type Rl = Dense<32, 32, Relu>;
type DeepRelu = Seq![Dense<64, 32, Relu>, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Dense<32, 10>];
type ShallowSigmoid = Seq![Dense<64, 32, Sigmoid>, Dense<32, 10>];
/// Ten dense layers with a batch norm (the activation fused into it) after each hidden one.
type Normalized<A> = Seq![
    Dense<64, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 10>
];

struct Run {
    /// Health of the first batch at initialisation.
    initial: HealthReport<19>,
    /// Flags of the first batch after training.
    final_flags: Flags,
    test_accuracy: f32,
}

fn train<L>(init: Init, seed: u64) -> Run
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let net = L::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut params = Box::new(L::Params::ZEROED);
    let mut grads = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, 32>::ZEROED);
    net.init(&mut params, init, &mut rng);
    let mut initial = HealthReport::<19>::new(HealthConfig::DEFAULT);
    let mut health = |params: &L::Params, report: &mut HealthReport<19>| {
        digits::gradient_health(
            &net,
            params,
            &mut grads,
            &mut workspace,
            &digits::TRAIN,
            report,
        )
        .unwrap();
    };
    health(&params, &mut initial);
    let mut grads = Box::new(L::Params::ZEROED);
    let mut sgd = Sgd::new(0.1).unwrap();
    let mut order = digits::TRAIN;
    for _ in 0..30 {
        shuffle(&mut order, &mut rng);
        digits::train_epoch(
            &net,
            &mut params,
            &mut grads,
            &mut workspace,
            &mut sgd,
            &order,
        )
        .unwrap();
    }
    let test_accuracy = digits::accuracy(&net, &params, &mut workspace.cache, &digits::TEST);
    let mut after = HealthReport::<19>::new(HealthConfig::DEFAULT);
    digits::gradient_health(
        &net,
        &params,
        &mut grads,
        &mut workspace,
        &digits::TRAIN,
        &mut after,
    )
    .unwrap();
    Run {
        initial,
        final_flags: after.flags(),
        test_accuracy,
    }
}

/// One run per seed, and the median test accuracy.
fn runs<L>(what: &str, init: Init) -> (Vec<Run>, f32)
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let runs: Vec<Run> = (0..SEEDS).map(|seed| train::<L>(init, seed)).collect();
    let mut accuracies: Vec<f32> = runs.iter().map(|r| r.test_accuracy).collect();
    accuracies.sort_by(f32::total_cmp);
    let median = accuracies[accuracies.len() / 2];
    println!("{what}: test accuracy median {median} of {accuracies:?}");
    (runs, median)
}

/// ‖dW‖ of the dense layers, output first.
fn dense_norms(report: &HealthReport<19>) -> Vec<f32> {
    let layers = report.layers_from_output().iter();
    layers
        .filter(|l| l.kind == LayerKind::Dense)
        .map(|l| l.weight_grad.l2_norm())
        .collect()
}

#[test]
fn deep_sigmoid_with_xavier_vanishes_and_stays_near_chance() {
    let (runs, median) = runs::<DeepSigmoid>("10-layer sigmoid, Xavier", Init::XavierNormal);
    for r in &runs {
        assert!(r.test_accuracy <= 0.20, "every seed: {}", r.test_accuracy);
        assert!(
            r.initial.flags().vanishing.is_some(),
            "flagged Vanishing from the first batch"
        );
        // Geometric decay: about √32·std(W)·E[σ'] ≈ 0.25 per layer.
        let factor = r.initial.fitted_decay_factor().unwrap();
        assert!((0.15..0.4).contains(&factor), "{factor}");
        // Roughly geometric: each hidden layer shrinks the norm by a factor in (0.1, 0.6).
        let norms = dense_norms(&r.initial);
        for pair in norms[1..].windows(2) {
            let step = pair[1] / pair[0];
            assert!((0.1..0.6).contains(&step), "step {step} in {norms:?}");
        }
    }
    assert!(median <= 0.20);
}

#[test]
fn deep_sigmoid_with_standard_normal_init_trains() {
    // √width·std(W)·E[σ'] ≈ 0.7 per layer: the signal survives ten layers.
    let (runs, median) = runs::<DeepSigmoid>("10-layer sigmoid, N(0,1)", Init::StandardNormal);
    assert!(median >= 0.80, "{median}");
    assert!(runs.iter().all(|r| r.initial.flags().vanishing.is_none()));
}

#[test]
fn deep_relu_with_he_reaches_95_percent_and_does_not_decay() {
    let (runs, median) = runs::<DeepRelu>("10-layer ReLU, He", Init::HeNormal);
    assert!(median >= 0.95, "{median}");
    for r in &runs {
        assert!(r.initial.flags().vanishing.is_none());
        let factor = r.initial.fitted_decay_factor().unwrap();
        assert!((0.8..1.5).contains(&factor), "{factor}");
    }
}

#[test]
fn shallow_sigmoid_reaches_90_percent() {
    let (_, median) = runs::<ShallowSigmoid>("3-layer sigmoid, Xavier", Init::XavierNormal);
    assert!(median >= 0.90, "{median}");
}

/// The cure of the vanishing gradient: the same 10-layer sigmoid/Xavier net with a batch
/// norm after each hidden layer trains, and the report is quiet from the first batch.
#[test]
fn batch_norm_cures_the_vanishing_sigmoid_net() {
    let (runs, median) =
        runs::<Normalized<Sigmoid>>("10-layer sigmoid, Xavier, batch norm", Init::XavierNormal);
    assert!(median >= 0.90, "{median}");
    for r in &runs {
        let flags = r.initial.flags();
        assert!(flags.vanishing.is_none(), "{}", r.initial);
        // The dense layers' ‖dW‖ no longer decays geometrically.
        let factor = r.initial.fitted_decay_factor().unwrap();
        assert!((0.7..1.5).contains(&factor), "{factor}");
    }
}

/// The cure of the exploding ReLU net (N(0, 1) weights): with batch norms it trains and is
/// not flagged `Exploding`.
#[test]
fn batch_norm_cures_the_exploding_relu_net() {
    let (untreated, _) = runs::<DeepRelu>("10-layer ReLU, N(0,1)", Init::StandardNormal);
    assert!(untreated
        .iter()
        .all(|r| r.initial.flags().exploding.is_some()));
    let (runs, median) =
        runs::<Normalized<Relu>>("10-layer ReLU, N(0,1), batch norm", Init::StandardNormal);
    assert!(median >= 0.90, "{median}");
    for r in &runs {
        assert!(r.initial.flags().exploding.is_none(), "{}", r.initial);
        assert!(r.final_flags.exploding.is_none());
    }
}

/// The cure of the saturating tanh net (N(0, 1) weights, whose gradients underflow after
/// training): with batch norms it trains, and neither `Saturated` nor `Underflow` appears
/// at initialisation or after training.
#[test]
fn batch_norm_cures_the_saturating_tanh_net() {
    let (runs, median) =
        runs::<Normalized<Tanh>>("10-layer tanh, N(0,1), batch norm", Init::StandardNormal);
    assert!(median >= 0.90, "{median}");
    for r in &runs {
        for flags in [r.initial.flags(), r.final_flags] {
            assert!(
                flags.saturated.is_none() && flags.underflow.is_none(),
                "{flags:?}"
            );
        }
    }
}
