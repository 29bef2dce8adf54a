//! The vanishing-gradient study's claims (`cargo run --release --example vanishing`), checked
//! on the digits data with seed 0, 30 epochs, SGD lr 0.1, batch 32. CI runs it in release
//! mode; it takes a few seconds there. (The sigmoid-chain bound (|w|/4)^L is checked in
//! `tests/health.rs`.)

use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::{shuffle, Init};
use gradguard::{Dense, Layer, Relu, Seq, Sgd, Sigmoid, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type Sig = Dense<32, 32, Sigmoid>;
type DeepSigmoid =
    Seq![Dense<64, 32, Sigmoid>, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Dense<32, 10>];
type Rl = Dense<32, 32, Relu>;
type DeepRelu = Seq![Dense<64, 32, Relu>, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Dense<32, 10>];
type ShallowSigmoid = Seq![Dense<64, 32, Sigmoid>, Dense<32, 10>];

struct Result {
    /// Health of the first batch at initialisation.
    initial: HealthReport<10>,
    test_accuracy: f32,
}

fn train<L>(init: Init) -> Result
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let net = L::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut params = Box::new(L::Params::ZEROED);
    let mut grads = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, 32>::ZEROED);
    net.init(&mut params, init, &mut rng);
    let mut initial = HealthReport::<10>::new(HealthConfig::DEFAULT);
    digits::gradient_health(
        &net,
        &params,
        &mut grads,
        &mut workspace,
        &digits::TRAIN,
        &mut initial,
    )
    .unwrap();
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
    Result {
        initial,
        test_accuracy,
    }
}

#[test]
fn deep_sigmoid_with_xavier_vanishes_and_stays_near_chance() {
    let r = train::<DeepSigmoid>(Init::XavierNormal);
    println!(
        "10-layer sigmoid, Xavier: test accuracy {}",
        r.test_accuracy
    );
    assert!(r.test_accuracy <= 0.20, "{}", r.test_accuracy);
    assert!(
        r.initial.flags().vanishing.is_some(),
        "flagged Vanishing from the first batch"
    );
    // Geometric decay: about √32·std(W)·E[σ'] ≈ 0.25 per layer (data README).
    let factor = r.initial.fitted_decay_factor().unwrap();
    println!("fitted per-layer factor {factor}");
    assert!((0.15..0.4).contains(&factor), "{factor}");
    // Roughly geometric: each hidden layer shrinks the norm by a factor in (0.1, 0.6).
    let norms: Vec<f32> = r
        .initial
        .layers_from_output()
        .iter()
        .map(|l| l.weight_grad.l2_norm())
        .collect();
    for pair in norms[1..].windows(2) {
        let step = pair[1] / pair[0];
        assert!((0.1..0.6).contains(&step), "step {step} in {norms:?}");
    }
}

#[test]
fn deep_sigmoid_with_standard_normal_init_trains() {
    // √width·std(W)·E[σ'] ≈ 0.7 per layer: the signal survives ten layers.
    let r = train::<DeepSigmoid>(Init::StandardNormal);
    println!(
        "10-layer sigmoid, N(0,1): test accuracy {}",
        r.test_accuracy
    );
    assert!(r.test_accuracy >= 0.80, "{}", r.test_accuracy);
    assert!(r.initial.flags().vanishing.is_none());
}

#[test]
fn deep_relu_with_he_reaches_95_percent_and_does_not_decay() {
    let r = train::<DeepRelu>(Init::HeNormal);
    println!("10-layer ReLU, He: test accuracy {}", r.test_accuracy);
    assert!(r.test_accuracy >= 0.95, "{}", r.test_accuracy);
    assert!(r.initial.flags().vanishing.is_none());
    let factor = r.initial.fitted_decay_factor().unwrap();
    println!("fitted per-layer factor {factor}");
    assert!((0.8..1.5).contains(&factor), "{factor}");
}

#[test]
fn shallow_sigmoid_reaches_90_percent() {
    let r = train::<ShallowSigmoid>(Init::XavierNormal);
    println!("3-layer sigmoid, Xavier: test accuracy {}", r.test_accuracy);
    assert!(r.test_accuracy >= 0.90, "{}", r.test_accuracy);
}
