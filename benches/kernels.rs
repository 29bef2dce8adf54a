//! Criterion benchmarks of the scalar kernels and one training step.
//!
//! `cargo bench --bench kernels`. Peers (nalgebra, ndarray, matrixmultiply, gemm) and the
//! SIMD backends come with the SIMD issue; this file measures the scalar reference so that
//! later changes have a baseline.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::{
    math, train_step, Dense, GradMode, Layer, Loss, Relu, Seq, Sgd, Sigmoid, SoftmaxCrossEntropy,
    Workspace, Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;

fn activations(c: &mut Criterion) {
    let z: Vec<f32> = (0..4096).map(|k| (k as f32 - 2048.0) / 128.0).collect();
    let mut out = vec![0.0f32; 4096];
    let mut group = c.benchmark_group("sigmoid_and_derivative_4096");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("gradguard_scalar", |b| {
        b.iter(|| {
            for (o, &x) in out.iter_mut().zip(black_box(&z)) {
                *o = math::sigmoid(x) + math::sigmoid_derivative(x);
            }
            black_box(&out);
        })
    });
    group.bench_function("std_f32_exp_loop", |b| {
        b.iter(|| {
            for (o, &x) in out.iter_mut().zip(black_box(&z)) {
                let s = 1.0 / (1.0 + (-x).exp());
                *o = s + s * (1.0 - s);
            }
            black_box(&out);
        })
    });
    group.finish();
}

fn dense_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_forward_batch32");
    macro_rules! shape {
        ($in:literal, $out:literal) => {{
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
            let layer = Dense::<$in, $out>::default();
            let mut p = Box::new(<Dense<$in, $out> as Layer>::Params::ZEROED);
            layer.init(&mut p, Init::XavierUniform, &mut rng);
            let x = Box::new([[0.5f32; $in]; 32]);
            let mut cache = Box::new(<Dense<$in, $out> as Layer>::Cache::<32>::ZEROED);
            group.throughput(Throughput::Elements(($in * $out * 32) as u64));
            group.bench_function(
                BenchmarkId::new("gradguard_scalar", concat!($in, "x", $out)),
                |b| b.iter(|| layer.forward(black_box(&p), black_box(&x), &mut cache)),
            );
        }};
    }
    shape!(64, 64);
    shape!(128, 128);
    group.finish();
}

fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_64_128_128_10_batch32");
    macro_rules! net {
        ($name:literal, $act:ty) => {{
    type Net = Seq![Dense<64, 128, $act>, Dense<128, 128, $act>, Dense<128, 10>];
            let net = Net::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
            let mut p = Box::new(<Net as Layer>::Params::ZEROED);
            let mut g = Box::new(<Net as Layer>::Params::ZEROED);
            let mut ws = Box::new(Workspace::<Net, 32>::ZEROED);
            net.init(&mut p, Init::HeNormal, &mut rng);
            let x = Box::new([[0.25f32; 64]; 32]);
            let y: [usize; 32] = core::array::from_fn(|k| k % 10);
            let mut sgd = Sgd::new(0.01).expect("valid learning rate");
            group.bench_function($name, |b| {
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
        }};
    }
    net!("gradguard_scalar_relu", Relu);
    net!("gradguard_scalar_sigmoid", Sigmoid);
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

criterion_group!(
    benches,
    activations,
    dense_forward,
    training_step,
    backward_health_overhead
);
criterion_main!(benches);
