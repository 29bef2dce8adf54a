//! Criterion benchmarks of gradguard alone: each backend against the others, and the cost of
//! health tracking. `cargo bench --bench kernels`. The comparison with other Rust libraries
//! is `benches/peers.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::kernels::{self, Backend};
use gradguard::{
    train_step, Dense, GradMode, Layer, Loss, Relu, Seq, Sgd, Sigmoid, SoftmaxCrossEntropy,
    Workspace, Zeroed,
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
    let before = kernels::backend();
    for b in Backend::available() {
        kernels::set_backend(b).expect("available");
        group.bench_function(BenchmarkId::new("train_step_relu", b.name()), |bch| {
            bch.iter(|| {
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
        group.bench_function(
            BenchmarkId::new("dense_forward_128x128_batch32", b.name()),
            |bch| bch.iter(|| layer.forward(black_box(&lp), black_box(&xs), &mut cache)),
        );
    }
    kernels::set_backend(before).expect("was available");
    group.finish();
}

/// The backward pass of 64-128-128-10, batch 32, with and without health tracking (the
/// gradient-health issue's goal: tracking costs at most 5 %).
fn backward_health_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("backward_64_128_128_10_batch32");
    macro_rules! net {
        ($name:literal, $act:ty) => {{
    type Net = Seq![Dense<64, 128, $act>, Dense<128, 128, $act>, Dense<128, 10>];
            let net = Net::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
            let mut p = Box::new(<Net as Layer>::Params::ZEROED);
            let mut g = Box::new(<Net as Layer>::Params::ZEROED);
            let mut cache = Box::new(<Net as Layer>::Cache::<32>::ZEROED);
            net.init(&mut p, Init::HeNormal, &mut rng);
            let mut x = Box::new([[0.0f32; 64]; 32]);
            let mut y = [0usize; 32];
            assert!(digits::fill_batch(&digits::TRAIN[..32], &mut x, &mut y));
            net.forward(&p, &x, &mut cache);
            let mut dy = Box::new([[0.0f32; 10]; 32]);
            SoftmaxCrossEntropy
                .loss_and_gradient(Net::output(&cache), &y, &mut dy)
                .expect("valid labels");
            group.bench_function(concat!($name, "_untracked"), |b| {
                b.iter(|| {
                    net.backward(
                        &p,
                        black_box(&x),
                        &mut cache,
                        &dy,
                        &mut g,
                        None,
                        GradMode::Overwrite,
                    )
                })
            });
            let mut report = Box::new(HealthReport::<3>::new(HealthConfig::DEFAULT));
            group.bench_function(concat!($name, "_health"), |b| {
                b.iter(|| {
                    report.reset();
                    net.backward_observed(
                        &p,
                        black_box(&x),
                        &mut cache,
                        &dy,
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

criterion_group!(benches, backends, backward_health_overhead);
criterion_main!(benches);
