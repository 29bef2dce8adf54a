//! What health tracking costs a training step, measured robustly on a noisy machine:
//! `train_step` and `Trainer::step_observed` (the full report) on 64-128-128-10, batch 32, one
//! SGD step, ReLU and sigmoid hidden layers, timed in alternation (blocks of 200 steps, the
//! fastest block of each kind over 100 blocks), so that drift of the machine's speed hits
//! both alike. Prints the two times and their ratio.
//!
//! ```sh
//! taskset -c 1 cargo run --release --example health_cost
//! ```
//!
//! `cargo bench --bench kernels -- health_` measures the same pairs with criterion (one after
//! the other, so its ratios move with the machine's drift).

use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::{
    train_step, Dense, Layer, Relu, Seq, Sgd, Sigmoid, SoftmaxCrossEntropy, Trainer, Workspace,
    Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;
use std::time::Instant;

/// Mean time per call of `f` in µs over a block of 200 calls.
fn block(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..200 {
        f();
    }
    start.elapsed().as_secs_f64() / 200.0 * 1e6
}

macro_rules! measure {
    ($name:literal, $act:ty) => {{
    type Net = Seq![Dense<64, 128, $act>, Dense<128, 128, $act>, Dense<128, 10>];
        let net = Net::default();
        let mut p = Box::new(<Net as Layer>::Params::ZEROED);
        let mut g = Box::new(<Net as Layer>::Params::ZEROED);
        let mut ws = Box::new(Workspace::<Net, 32>::ZEROED);
        net.init(
            &mut p,
            Init::HeNormal,
            &mut Xoshiro256PlusPlus::seed_from_u64(3),
        );
        let mut x = Box::new([[0.0f32; 64]; 32]);
        let mut y = [0usize; 32];
        assert!(digits::fill_batch(&digits::TRAIN[..32], &mut x, &mut y));
        let mut report = Box::new(HealthReport::<3>::new(HealthConfig::DEFAULT));
        // A learning rate so small that the parameters barely move while measuring.
        let mut sgd = Sgd::new(1e-6).expect("valid learning rate");
        let (mut plain, mut observed) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..100 {
            plain = plain.min(block(|| {
                let r = train_step(
                    &net,
                    &mut p,
                    &mut g,
                    &mut ws,
                    &mut sgd,
                    &SoftmaxCrossEntropy,
                    black_box(&x),
                    &y,
                );
                black_box(r).expect("valid labels");
            }));
            observed = observed.min(block(|| {
                let r = Trainer::new(
                    &net,
                    &mut p,
                    &mut g,
                    &mut ws,
                    &mut sgd,
                    &SoftmaxCrossEntropy,
                )
                .step_observed(black_box(&x), &y, &mut *report);
                black_box(r).expect("valid labels");
            }));
        }
        println!(
            "{:<8} train_step {:>6.2} µs   train_step_observed {:>6.2} µs   ratio {:.3}",
            $name,
            plain,
            observed,
            observed / plain
        );
    }};
}

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: cargo run --release --example health_cost  (pin it: taskset -c 1)");
        return;
    }
    println!("backend: {}", gradguard::kernels::backend().name());
    measure!("relu", Relu);
    measure!("sigmoid", Sigmoid);
}
