//! Criterion benchmarks of gradguard alone: each backend against the others, and the cost of
//! health tracking. `cargo bench --bench kernels`. The comparison with other Rust libraries
//! is `benches/peers.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::kernels::Backend;
use gradguard::{
    train_step, Dense, GradMode, Layer, Loss, Phase, Relu, Seq, Sgd, Sigmoid, SoftmaxCrossEntropy,
    Trainer, Workspace, Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;

/// One training step of 64-128-128-10 (batch 32, ReLU) and its dense forward 128×128 on
/// every backend this machine has: what each instruction set buys over the scalar reference.
fn backends(c: &mut Criterion) {
    type Net = Seq![Dense<64, 128, Relu>, Dense<128, 128, Relu>, Dense<128, 10>];
    let mut group = c.benchmark_group("backends");
    let net = Net::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let mut p = Box::new(<Net as Layer>::Params::ZEROED);
    let mut g = Box::new(<Net as Layer>::Params::ZEROED);
    let mut ws = Box::new(Workspace::<Net, 32>::ZEROED);
    net.init(&mut p, Init::HeNormal, &mut rng);
    let mut x = Box::new([[0.0f32; 64]; 32]);
    let mut y = [0usize; 32];
    assert!(digits::fill_batch(&digits::TRAIN[..32], &mut x, &mut y));
    let mut sgd = Sgd::new(0.01).expect("valid learning rate");
    let layer = Dense::<128, 128>::default();
    let mut lp = Box::new(<Dense<128, 128> as Layer>::Params::ZEROED);
    layer.init(&mut lp, Init::XavierUniform, &mut rng);
    let xs = Box::new([[0.5f32; 128]; 32]);
    let mut cache = Box::new(<Dense<128, 128> as Layer>::Cache::<32>::ZEROED);
    for b in Backend::available() {
        // Each backend's token, passed explicitly: the process-wide choice is not touched.
        let isa = b.isa().expect("available");
        let mut trainer = Trainer::new(
            &net,
            &mut p,
            &mut g,
            &mut ws,
            &mut sgd,
            &SoftmaxCrossEntropy,
        )
        .with_isa(isa);
        group.bench_function(BenchmarkId::new("train_step_relu", b.name()), |bch| {
            bch.iter(|| trainer.step(black_box(&x), &y))
        });
        group.bench_function(
            BenchmarkId::new("dense_forward_128x128_batch32", b.name()),
            |bch| {
                bch.iter(|| {
                    layer.forward_on(
                        isa,
                        Phase::Inference,
                        black_box(&lp),
                        black_box(&xs),
                        &mut cache,
                    )
                })
            },
        );
    }
    group.finish();
}

/// What health tracking costs on 64-128-128-10, batch 32, ReLU and sigmoid hidden layers,
/// each pair in the same run: one SGD step with `Trainer::step_observed` (the full report)
/// against `train_step` (the gradient-health issue's goal: ≤ 1.10×), and the backward pass
/// alone with and without a report.
fn health_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("health_64_128_128_10_batch32");
    macro_rules! net {
        ($name:literal, $act:ty) => {{
    type Net = Seq![Dense<64, 128, $act>, Dense<128, 128, $act>, Dense<128, 10>];
            let net = Net::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
            let mut p = Box::new(<Net as Layer>::Params::ZEROED);
            let mut g = Box::new(<Net as Layer>::Params::ZEROED);
            let mut ws = Box::new(Workspace::<Net, 32>::ZEROED);
            net.init(&mut p, Init::HeNormal, &mut rng);
            let mut x = Box::new([[0.0f32; 64]; 32]);
            let mut y = [0usize; 32];
            assert!(digits::fill_batch(&digits::TRAIN[..32], &mut x, &mut y));
            let mut report = Box::new(HealthReport::<3>::new(HealthConfig::DEFAULT));
            // A learning rate so small that the parameters barely move while measuring.
            let mut sgd = Sgd::new(1e-6).expect("valid learning rate");
            group.bench_function(concat!($name, "_train_step"), |b| {
                b.iter(|| {
                    train_step(
                        &net,
                        &mut p,
                        &mut g,
                        &mut ws,
                        &mut sgd,
                        &SoftmaxCrossEntropy,
                        black_box(&x),
                        &y,
                    )
                })
            });
            group.bench_function(concat!($name, "_train_step_observed"), |b| {
                b.iter(|| {
                    Trainer::new(
                        &net,
                        &mut p,
                        &mut g,
                        &mut ws,
                        &mut sgd,
                        &SoftmaxCrossEntropy,
                    )
                    .step_observed(black_box(&x), &y, &mut *report)
                })
            });
            net.forward(&p, &x, &mut ws.cache);
            SoftmaxCrossEntropy
                .loss_and_gradient(Net::output(&ws.cache), &y, &mut ws.output_grad)
                .expect("valid labels");
            let (cache, dy) = (&mut ws.cache, &ws.output_grad);
            group.bench_function(concat!($name, "_backward"), |b| {
                b.iter(|| {
                    net.backward(
                        &p,
                        black_box(&x),
                        cache,
                        dy,
                        &mut g,
                        None,
                        GradMode::Overwrite,
                    )
                })
            });
            group.bench_function(concat!($name, "_backward_observed"), |b| {
                b.iter(|| {
                    report.reset();
                    net.backward_observed(
                        &p,
                        black_box(&x),
                        cache,
                        dy,
                        &mut g,
                        None,
                        GradMode::Overwrite,
                        &mut *report,
                    )
                })
            });
        }};
    }
    net!("relu", Relu);
    net!("sigmoid", Sigmoid);
    group.finish();
}

criterion_group!(benches, backends, health_cost);
criterion_main!(benches);
