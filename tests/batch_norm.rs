//! `BatchNorm`: gradients against f64 finite differences, PyTorch's `BatchNorm1d` on a
//! committed fixture, stability with a large mean, batch size 1, inference, the running
//! statistics through the training steps, health records, and every backend against the
//! scalar one bit for bit.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use gradguard::health::{HealthConfig, HealthReport, LayerKind, NoHealth};
use gradguard::kernels::{AnyIsa, Backend};
use gradguard::{
    train_step, Activation, BackwardContext, BatchNorm, Dense, GradMode, Identity, Layer,
    MeanSquaredError, Parameters, Phase, Seq, Sgd, Sigmoid, StepGuard, Tanh, Trainer, Workspace,
    Zeroed,
};
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

mod torch {
    include!("data/pytorch_batch_norm.rs");
}

fn uniform(rng: &mut Xoshiro256PlusPlus, lo: f32, hi: f32) -> f32 {
    let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    lo + (hi - lo) * u
}

/// The f64 reference of the training forward: `a = f(γ·(x − μ)/√(σ² + ε) + β)` per feature,
/// with `f` given in f64.
fn reference_forward(
    x: &[Vec<f64>],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    f: fn(f64) -> f64,
) -> Vec<Vec<f64>> {
    let (b, n) = (x.len(), gamma.len());
    let mut out = vec![vec![0.0; n]; b];
    for j in 0..n {
        let mean = x.iter().map(|r| r[j]).sum::<f64>() / b as f64;
        let var = x.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / b as f64;
        for (r, o) in x.iter().zip(out.iter_mut()) {
            o[j] = f(gamma[j] * (r[j] - mean) / (var + eps).sqrt() + beta[j]);
        }
    }
    out
}

fn sigmoid64(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// ∂L/∂x, ∂L/∂γ, ∂L/∂β of `L = Σ c·a` by central differences of the f64 reference.
#[allow(clippy::type_complexity)]
fn finite_differences(
    x: &[Vec<f64>],
    gamma: &[f64],
    beta: &[f64],
    c: &[Vec<f64>],
    f: fn(f64) -> f64,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let loss = |x: &[Vec<f64>], g: &[f64], b: &[f64]| -> f64 {
        let a = reference_forward(x, g, b, 1e-5, f);
        a.iter()
            .zip(c)
            .map(|(ar, cr)| ar.iter().zip(cr).map(|(a, c)| a * c).sum::<f64>())
            .sum()
    };
    let h = 1e-6;
    let mut dx = vec![vec![0.0; gamma.len()]; x.len()];
    for s in 0..x.len() {
        for j in 0..gamma.len() {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[s][j] += h;
            down[s][j] -= h;
            dx[s][j] = (loss(&up, gamma, beta) - loss(&down, gamma, beta)) / (2.0 * h);
        }
    }
    let along = |v: &[f64], k: usize, which: bool| -> f64 {
        let (mut up, mut down) = (v.to_vec(), v.to_vec());
        up[k] += h;
        down[k] -= h;
        let (lu, ld) = if which {
            (loss(x, &up, beta), loss(x, &down, beta))
        } else {
            (loss(x, gamma, &up), loss(x, gamma, &down))
        };
        (lu - ld) / (2.0 * h)
    };
    let dgamma = (0..gamma.len()).map(|k| along(gamma, k, true)).collect();
    let dbeta = (0..beta.len()).map(|k| along(beta, k, false)).collect();
    (dx, dgamma, dbeta)
}

/// Asserts `|got − want| ≤ tol·(1 + max|want|)` elementwise.
fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol * scale,
            "{what}[{k}]: {g} vs {w} (scale {scale})"
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: length");
}

fn gradient_check<A: Activation + Default, const N: usize, const B: usize>(
    f: fn(f64) -> f64,
    seed: u64,
) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let bn = BatchNorm::<N, A>::default();
    let mut p = <BatchNorm<N, A> as Layer>::Params::ZEROED;
    for j in 0..N {
        p.scale[j] = uniform(&mut rng, 0.5, 2.0);
        p.shift[j] = uniform(&mut rng, -1.0, 1.0);
    }
    let x: [[f32; N]; B] =
        core::array::from_fn(|_| core::array::from_fn(|j| uniform(&mut rng, -2.0, 2.0) + j as f32));
    let c: [[f32; N]; B] =
        core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)));
    let mut cache = <BatchNorm<N, A> as Layer>::Cache::<B>::ZEROED;
    bn.forward_train(&p, &x, &mut cache);
    let mut grads = <BatchNorm<N, A> as Layer>::Params::ZEROED;
    let mut dx = [[0.0f32; N]; B];
    bn.backward(
        &p,
        &x,
        &mut cache,
        &c,
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );

    let to64 = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
    let x64: Vec<Vec<f64>> = x.iter().map(|r| to64(r)).collect();
    let c64: Vec<Vec<f64>> = c.iter().map(|r| to64(r)).collect();
    let (fdx, fdg, fdb) = finite_differences(&x64, &to64(&p.scale), &to64(&p.shift), &c64, f);
    close("dx", dx.as_flattened(), &fdx.concat(), 2e-4);
    close("dgamma", &grads.scale, &fdg, 2e-4);
    close("dbeta", &grads.shift, &fdb, 2e-4);
    // The forward matches the f64 reference too.
    let a = reference_forward(&x64, &to64(&p.scale), &to64(&p.shift), 1e-5, f);
    close("output", cache.output.as_flattened(), &a.concat(), 1e-5);
    // Running statistics are state, never gradients.
    assert_eq!(grads.running_mean, [0.0; N]);
    assert_eq!(grads.running_variance, [0.0; N]);
}

/// The full batch-coupled gradient (not the per-sample shortcut) matches f64 finite
/// differences for batch sizes 2, 3, 8 and 32, with and without a fused activation.
#[test]
fn gradients_match_f64_finite_differences() {
    gradient_check::<Identity, 5, 2>(|z| z, 1);
    gradient_check::<Identity, 19, 3>(|z| z, 2);
    gradient_check::<Identity, 7, 8>(|z| z, 3);
    gradient_check::<Sigmoid, 19, 8>(sigmoid64, 4);
    gradient_check::<Tanh, 3, 32>(f64::tanh, 5);
    gradient_check::<Sigmoid, 33, 2>(sigmoid64, 6);
}

type Torch = BatchNorm<{ torch::FEATURES }>;
type TorchSigmoid = BatchNorm<{ torch::FEATURES }, Sigmoid>;
const TB: usize = torch::BATCH;

/// `|got − want| ≤ tol(j)` with a per-feature tolerance.
fn near_torch(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f32) {
    let n = torch::FEATURES;
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(k % n);
        assert!(
            (g - w).abs() <= t,
            "{what}[{k}]: {g} vs PyTorch {w} (tolerance {t})"
        );
    }
}

/// The rounding both implementations may have for feature `j`: features 0..3 sit at 1e4
/// with spread ~1, where the f32 mean alone is uncertain by half an ulp of 1e4 (4.9e-4)
/// and PyTorch forms x·(γ/σ) + (β − μγ/σ), cancelling two terms of 1e4·γ/σ (an ulp of
/// which is ~1e-3); elsewhere values are O(1) and a few ulps apart.
fn torch_tolerance(j: usize, large: f32, small: f32) -> f32 {
    if j < 3 {
        large
    } else {
        small
    }
}

fn torch_case<A: Activation + Default>(
    y: &[[f32; 19]; 6],
    dx_want: &[[f32; 19]; 6],
    dgamma: &[f32; 19],
    dbeta: &[f32; 19],
    running: [&[f32; 19]; 4],
    eval: &[[f32; 19]; 1],
) {
    let bn = BatchNorm::<19, A>::default();
    let mut p = <BatchNorm<19, A> as Layer>::Params::ZEROED;
    bn.init(
        &mut p,
        gradguard::init::Init::XavierUniform,
        &mut Xoshiro256PlusPlus::seed_from_u64(0),
    );
    p.scale = torch::GAMMA;
    p.shift = torch::BETA;
    let mut cache = <BatchNorm<19, A> as Layer>::Cache::<TB>::ZEROED;
    bn.forward_train(&p, &torch::X1, &mut cache);
    near_torch("y", cache.output.as_flattened(), y.as_flattened(), |j| {
        torch_tolerance(j, 4e-3, 2e-6)
    });
    let mut grads = <BatchNorm<19, A> as Layer>::Params::ZEROED;
    let mut dx = [[0.0f32; 19]; TB];
    bn.backward(
        &p,
        &torch::X1,
        &mut cache,
        &torch::DY,
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );
    near_torch("dx", dx.as_flattened(), dx_want.as_flattened(), |j| {
        torch_tolerance(j, 1e-2, 1e-5)
    });
    near_torch("dgamma", &grads.scale, dgamma, |j| {
        torch_tolerance(j, 4e-3, 1e-5)
    });
    near_torch("dbeta", &grads.shift, dbeta, |j| {
        torch_tolerance(j, 4e-3, 1e-5)
    });
    bn.update_running_statistics(&mut p, &mut cache);
    // The running mean of a 1e4 feature: ulps of 1e3 (6e-5) apart; variances O(1).
    near_torch("running_mean 1", &p.running_mean, running[0], |_| 2e-4);
    near_torch("running_var 1", &p.running_variance, running[1], |_| 2e-5);
    bn.forward_train(&p, &torch::X2, &mut cache);
    bn.update_running_statistics(&mut p, &mut cache);
    near_torch("running_mean 2", &p.running_mean, running[2], |_| 4e-4);
    near_torch("running_var 2", &p.running_variance, running[3], |_| 4e-5);
    // Inference on one sample with the running statistics.
    let mut one = <BatchNorm<19, A> as Layer>::Cache::<1>::ZEROED;
    bn.forward(&p, &torch::X3, &mut one);
    near_torch(
        "eval",
        one.output.as_flattened(),
        eval.as_flattened(),
        |j| torch_tolerance(j, 4e-3, 1e-5),
    );
}

/// Outputs, gradients, running statistics and inference equal PyTorch's `BatchNorm1d`
/// (fixture by `tools/pytorch-batchnorm.py`) within the stated rounding.
#[test]
fn matches_pytorch_batch_norm_1d() {
    use torch::*;
    torch_case::<Identity>(
        &PLAIN_Y,
        &PLAIN_DX,
        &PLAIN_DGAMMA,
        &PLAIN_DBETA,
        [
            &PLAIN_RUNNING_MEAN_1,
            &PLAIN_RUNNING_VAR_1,
            &PLAIN_RUNNING_MEAN_2,
            &PLAIN_RUNNING_VAR_2,
        ],
        &PLAIN_EVAL,
    );
    torch_case::<Sigmoid>(
        &SIGMOID_Y,
        &SIGMOID_DX,
        &SIGMOID_DGAMMA,
        &SIGMOID_DBETA,
        [
            &SIGMOID_RUNNING_MEAN_1,
            &SIGMOID_RUNNING_VAR_1,
            &SIGMOID_RUNNING_MEAN_2,
            &SIGMOID_RUNNING_VAR_2,
        ],
        &SIGMOID_EVAL,
    );
    let _ = (Torch::default(), TorchSigmoid::default());
}

/// Features around 1e4 with spread 1 (where E[x²] − E[x]² in f32 loses every digit): the
/// normalised outputs have mean 0 and variance 1 to within the f32 rounding of the mean,
/// and the gradients match f64.
#[test]
fn a_large_mean_keeps_its_digits() {
    const B: usize = 32;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let x: [[f32; 4]; B] =
        core::array::from_fn(|_| core::array::from_fn(|_| 1e4 + uniform(&mut rng, -1.7, 1.7)));
    let bn = BatchNorm::<4>::default();
    let mut p = <BatchNorm<4> as Layer>::Params::ZEROED;
    p.scale = [1.0; 4];
    let mut cache = <BatchNorm<4> as Layer>::Cache::<B>::ZEROED;
    bn.forward_train(&p, &x, &mut cache);
    let x64: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let want = reference_forward(&x64, &[1.0; 4], &[0.0; 4], 1e-5, |z| z);
    // The f32 mean is within half an ulp of 1e4 (2^-11) of the exact one; σ ≈ 1, so each
    // output is within that (plus a few ulps) of the f64 reference.
    close(
        "normalised",
        cache.output.as_flattened(),
        &want.concat(),
        6e-4 / 2.0,
    );
    for j in 0..4 {
        let mean: f64 = cache.output.iter().map(|r| f64::from(r[j])).sum::<f64>() / B as f64;
        let var: f64 = cache
            .output
            .iter()
            .map(|r| (f64::from(r[j]) - mean).powi(2))
            .sum::<f64>()
            / B as f64;
        assert!(
            mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3,
            "feature {j}: {mean} {var}"
        );
    }
    // The naive one-pass variance in f32 is far off here: the property this guards.
    let naive = {
        let (s, s2) = x
            .iter()
            .fold((0.0f32, 0.0f32), |(s, s2), r| (s + r[0], s2 + r[0] * r[0]));
        s2 / B as f32 - (s / B as f32) * (s / B as f32)
    };
    assert!(
        (f64::from(naive) - f64::from(cache.variance[0])).abs() > 0.1,
        "naive {naive}"
    );
    let c: [[f32; 4]; B] =
        core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)));
    let mut grads = <BatchNorm<4> as Layer>::Params::ZEROED;
    let mut dx = [[0.0f32; 4]; B];
    bn.backward(
        &p,
        &x,
        &mut cache,
        &c,
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );
    let c64: Vec<Vec<f64>> = c
        .iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let (fdx, fdg, _) = finite_differences(&x64, &[1.0; 4], &[0.0; 4], &c64, |z| z);
    close("dx", dx.as_flattened(), &fdx.concat(), 1e-3);
    close("dgamma", &grads.scale, &fdg, 1e-3);
}

/// A training batch of one: output β, dx = 0, dγ = 0, dβ = dy, running statistics
/// unchanged, no NaN anywhere.
#[test]
fn a_training_batch_of_one_is_defined() {
    let bn = BatchNorm::<3>::default();
    let mut p = <BatchNorm<3> as Layer>::Params::ZEROED;
    bn.init(
        &mut p,
        gradguard::init::Init::XavierUniform,
        &mut Xoshiro256PlusPlus::seed_from_u64(0),
    );
    p.shift = [0.5, -1.0, 2.0];
    let before = p;
    let mut cache = <BatchNorm<3> as Layer>::Cache::<1>::ZEROED;
    let x = [[3.0, -7.0, 1e30]];
    bn.forward_train(&p, &x, &mut cache);
    assert_eq!(cache.output, [p.shift]);
    let mut grads = <BatchNorm<3> as Layer>::Params::ZEROED;
    let mut dx = [[f32::NAN; 3]];
    bn.backward(
        &p,
        &x,
        &mut cache,
        &[[1.0, 2.0, 3.0]],
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );
    assert_eq!(dx, [[0.0; 3]]);
    assert_eq!(grads.scale, [0.0; 3]);
    assert_eq!(grads.shift, [1.0, 2.0, 3.0]);
    bn.update_running_statistics(&mut p, &mut cache);
    assert_eq!(p, before);
}

/// Inference is the affine map of the running statistics: y = γ·(x − m)·(1/√(v + ε)) + β,
/// for any batch size, and its backward is that map's (dx = γ/√(v + ε)·dy).
#[test]
fn inference_is_the_affine_map_of_the_running_statistics() {
    let bn = BatchNorm::<3>::default();
    let p = gradguard::BatchNormParams::<3> {
        scale: [2.0, 0.5, -1.0],
        shift: [0.0, 1.0, 3.0],
        running_mean: [1.0, -2.0, 100.0],
        running_variance: [4.0, 0.25, 9.0],
    };
    let x = [[1.0, 0.0, 103.0], [5.0, -2.0, 97.0]];
    let mut cache = <BatchNorm<3> as Layer>::Cache::<2>::ZEROED;
    bn.forward(&p, &x, &mut cache);
    for (row, out) in x.iter().zip(cache.output.iter()) {
        for j in 0..3 {
            let inv = 1.0 / (p.running_variance[j] + 1e-5f32).sqrt();
            let want = p.scale[j] * ((row[j] - p.running_mean[j]) * inv) + p.shift[j];
            assert_eq!(out[j], want);
        }
    }
    let mut one = <BatchNorm<3> as Layer>::Cache::<1>::ZEROED;
    bn.forward(&p, &[x[1]], &mut one);
    assert_eq!(
        one.output[0], cache.output[1],
        "batch size does not matter in inference"
    );
    let mut grads = <BatchNorm<3> as Layer>::Params::ZEROED;
    let mut dx = [[0.0f32; 3]; 2];
    bn.backward(
        &p,
        &x,
        &mut cache,
        &[[1.0; 3]; 2],
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );
    for j in 0..3 {
        let k = p.scale[j] * (1.0 / (p.running_variance[j] + 1e-5f32).sqrt());
        assert_eq!(dx[0][j], k);
    }
    // Inference never touches the running statistics.
    let mut q = p;
    bn.update_running_statistics(&mut q, &mut cache);
    assert_eq!(q, p);
}

type Net = Seq![Dense<6, 5>, BatchNorm<5, Sigmoid>, Dense<5, 2>];

fn net_params(seed: u64) -> <Net as Layer>::Params {
    let mut p = <Net as Layer>::Params::ZEROED;
    Net::default().init(
        &mut p,
        gradguard::init::Init::XavierUniform,
        &mut Xoshiro256PlusPlus::seed_from_u64(seed),
    );
    p
}

fn net_batch(seed: u64) -> ([[f32; 6]; 8], [[f32; 2]; 8]) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x = core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)));
    let y = core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)));
    (x, y)
}

/// `train_step` trains γ and β, folds the batch statistics into the running ones with
/// momentum 0.1 (and nothing else touches them: not the optimiser's weight decay), and a
/// guarded step that skips a poisoned batch leaves them as they were.
#[test]
fn training_steps_update_the_running_statistics_once() {
    let net = Net::default();
    let mut p = net_params(1);
    let mut g = <Net as Layer>::Params::ZEROED;
    let mut ws = Workspace::<Net, 8>::ZEROED;
    let mut sgd = Sgd::new(0.1).unwrap().with_weight_decay(0.5).unwrap();
    let (x, y) = net_batch(2);
    // The statistics the step will see: the first layer's output on this batch.
    let mut c = <Net as Layer>::Cache::<8>::ZEROED;
    net.forward_train(&p, &x, &mut c);
    let (mean, unbiased) = (c.second.first.mean, c.second.first.unbiased_variance);
    let before = p;
    train_step(
        &net,
        &mut p,
        &mut g,
        &mut ws,
        &mut sgd,
        &MeanSquaredError,
        &x,
        &y,
    )
    .unwrap();
    let bn = &p.second.first;
    for j in 0..5 {
        assert_eq!(bn.running_mean[j], 0.9f32 * 0.0 + 0.1 * mean[j]);
        assert_eq!(bn.running_variance[j], 0.9f32 * 1.0 + 0.1 * unbiased[j]);
    }
    assert_ne!(bn.scale, before.second.first.scale, "γ is trained");
    assert_ne!(bn.shift, before.second.first.shift, "β is trained");

    let snapshot = p;
    let mut poisoned = x;
    poisoned[3][2] = f32::NAN;
    let outcome = Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &MeanSquaredError)
        .step_guarded(&poisoned, &y, &StepGuard::SKIP_NON_FINITE, &mut NoHealth)
        .unwrap();
    assert!(!outcome.applied());
    assert_eq!(
        p, snapshot,
        "running statistics untouched by a skipped step"
    );
}

/// A health report covers the batch norm: one record per parametrised layer, the batch
/// norm's marked as such, with the values of the untracked pass bit for bit, and the
/// saturation of its fused sigmoid.
#[test]
fn health_records_the_batch_norm() {
    let net = Net::default();
    let mut p = net_params(3);
    let (x, y) = net_batch(4);
    let run = |p: &<Net as Layer>::Params, report: Option<&mut HealthReport<3>>| {
        let mut ws = Workspace::<Net, 8>::ZEROED;
        let mut g = <Net as Layer>::Params::ZEROED;
        let loss = match report {
            Some(r) => {
                gradguard::compute_gradients(&net, p, &mut g, &mut ws, &MeanSquaredError, &x, &y, r)
            }
            None => gradguard::compute_gradients(
                &net,
                p,
                &mut g,
                &mut ws,
                &MeanSquaredError,
                &x,
                &y,
                &mut NoHealth,
            ),
        }
        .unwrap();
        (loss, g)
    };
    let mut report = HealthReport::<3>::new(HealthConfig::DEFAULT);
    let tracked = run(&p, Some(&mut report));
    let untracked = run(&p, None);
    assert_eq!(tracked.0.to_bits(), untracked.0.to_bits());
    assert_eq!(tracked.1, untracked.1);
    let kinds: Vec<_> = report
        .layers_from_output()
        .iter()
        .map(|l| (l.layer, l.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (2, LayerKind::Dense),
            (1, LayerKind::BatchNorm),
            (0, LayerKind::Dense)
        ]
    );
    let bn = report.layer(1).unwrap();
    assert_eq!(bn.activation, "sigmoid");
    let dgamma = gradguard::health::TensorStats::of(&tracked.1.second.first.scale);
    assert_eq!(bn.weight_grad.l2_norm(), dgamma.l2_norm());
    // dx: the batch norm records it; the dense layer before has it as its error signal.
    let first = report.layer(0).unwrap();
    assert_eq!(bn.input_grad.len(), 8 * 5);
    // (The same values; the two norms are summed by different passes: an ulp apart.)
    let (a, b) = (bn.input_grad.l2_norm(), first.pre_activation_grad.l2_norm());
    assert!((a - b).abs() <= 2.0 * f32::EPSILON * b, "{a} vs {b}");
    assert!(first.input_grad.is_empty());
    assert_eq!(bn.saturated_units, 0);
    assert!(!report.flags().any(), "{report}");
    assert!(report.to_string().contains("bn/sigmoid"), "{report}");

    // Saturate the sigmoid: β = 40 for every unit (σ' ≈ 4e-18 < threshold).
    p.second.first.shift = [40.0; 5];
    let mut report = HealthReport::<3>::new(HealthConfig::DEFAULT);
    run(&p, Some(&mut report));
    assert_eq!(report.layer(1).unwrap().saturated_units, 5);
    assert_eq!(report.flags().saturated, Some(1), "{report}");
}

/// Products of dγ that underflow are counted: dy so small that dz·x̂ falls below 2^-126.
#[test]
fn underflowing_products_are_counted() {
    let bn = BatchNorm::<2>::default();
    let mut p = <BatchNorm<2> as Layer>::Params::ZEROED;
    p.scale = [1.0; 2];
    let x = [[1.0, 1.0], [3.0, 3.0]]; // x̂ = ∓1 (almost: ε)
    let mut cache = <BatchNorm<2> as Layer>::Cache::<2>::ZEROED;
    bn.forward_train(&p, &x, &mut cache);
    let mut grads = <BatchNorm<2> as Layer>::Params::ZEROED;
    let mut dx = [[0.0; 2]; 2];
    let mut report = HealthReport::<1>::new(HealthConfig::DEFAULT);
    let tiny = 1e-45f32; // the smallest subnormal: dz·x̂ with |x̂| < 1 rounds to 0 or stays
    bn.backward_observed(
        &p,
        &x,
        &mut cache,
        &[[tiny, 1.0], [tiny, 1.0]],
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
        &mut report,
    );
    let h = report.layer(0).unwrap();
    assert!(
        h.weight_products_became_zero + h.weight_products_became_subnormal >= 2,
        "{h:?}"
    );
    assert_eq!(report.flags().underflow, Some(0));
}

/// Every backend gives the scalar backend's bits: training and inference forward, the
/// backward (overwrite and accumulate), on widths around the vector lengths, with ±0,
/// subnormals, huge values and NaN in the batch.
#[test]
fn every_backend_gives_the_scalar_bits() {
    fn case<const N: usize, const B: usize>(isa: AnyIsa, seed: u64) -> Vec<u32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let specials = [0.0, -0.0, 1e-40, -3e-39, 1e30, f32::NAN, 1e4];
        let mut x: [[f32; N]; B] =
            core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -3.0, 3.0)));
        for (k, &s) in specials.iter().enumerate() {
            if N > 4 && B > 1 {
                x[k % B][(k * 5) % N] = s;
            }
        }
        let dy: [[f32; N]; B] =
            core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)));
        let bn = BatchNorm::<N, Sigmoid>::default();
        let mut p = <BatchNorm<N, Sigmoid> as Layer>::Params::ZEROED;
        for j in 0..N {
            p.scale[j] = uniform(&mut rng, 0.5, 2.0);
            p.shift[j] = uniform(&mut rng, -1.0, 1.0);
            p.running_variance[j] = uniform(&mut rng, 0.5, 2.0);
        }
        let mut bits = Vec::new();
        let mut cache = <BatchNorm<N, Sigmoid> as Layer>::Cache::<B>::ZEROED;
        let mut grads = <BatchNorm<N, Sigmoid> as Layer>::Params::ZEROED;
        let mut dx = [[0.0f32; N]; B];
        for training in [true, false] {
            let phase = if training {
                Phase::Training
            } else {
                Phase::Inference
            };
            bn.forward_on(isa, phase, &p, &x, &mut cache);
            for mode in [GradMode::Overwrite, GradMode::Accumulate] {
                let mut context = BackwardContext {
                    isa,
                    mode,
                    observer: &mut NoHealth,
                    layer: 0,
                };
                bn.backward_at(
                    &p,
                    &x,
                    &mut cache,
                    &dy,
                    &mut grads,
                    Some(&mut dx),
                    &mut context,
                );
                for v in cache.output.iter().flatten().chain(dx.iter().flatten()) {
                    bits.push(v.to_bits());
                }
                bits.extend(grads.scale.iter().chain(&grads.shift).map(|v| v.to_bits()));
            }
            bits.extend(
                cache
                    .mean
                    .iter()
                    .chain(&cache.variance)
                    .map(|v| v.to_bits()),
            );
        }
        // NaN payloads are unspecified: compare NaNs as one pattern.
        bits.iter()
            .map(|&b| {
                if f32::from_bits(b).is_nan() {
                    0x7fc0_0000
                } else {
                    b
                }
            })
            .collect()
    }
    // Each backend passed explicitly, as its token: nothing process-wide changes.
    let all = |b: Backend| {
        let isa = b.isa().expect("available");
        let mut v = case::<1, 3>(isa, 1);
        v.extend(case::<7, 2>(isa, 2));
        v.extend(case::<16, 8>(isa, 3));
        v.extend(case::<19, 5>(isa, 4));
        v.extend(case::<37, 9>(isa, 5));
        v
    };
    let reference = all(Backend::Scalar);
    let mut checked = 0;
    for b in Backend::available().filter(|&b| b != Backend::Scalar) {
        assert_eq!(all(b), reference, "{b:?}");
        checked += 1;
    }
    // On x86_64 and aarch64 at least one vector backend is always there.
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        assert!(checked > 0);
    }
}

/// Parameters images and safetensors carry the running statistics, with PyTorch's names; a
/// PyTorch state_dict (with its `num_batches_tracked`) loads.
#[test]
fn running_statistics_are_saved_with_the_parameters() {
    use gradguard::image::{self, NonFinite};
    let mut p = <Torch as Layer>::Params::ZEROED;
    p.running_mean[3] = 1.5;
    p.running_variance[4] = 2.5;
    let mut buf = vec![0u8; 4096];
    let n = image::save(&p, &mut buf).unwrap();
    let mut q = <Torch as Layer>::Params::ZEROED;
    image::load(&buf[..n], &mut q, NonFinite::Reject).unwrap();
    assert_eq!(q, p);
    assert_eq!(<<Torch as Layer>::Params as Parameters>::TENSORS, 4);
    #[cfg(feature = "safetensors")]
    {
        use gradguard::interchange::{load_safetensors, save_safetensors, Naming};
        let file = save_safetensors(&p, Naming::Prefixes(&["bn"])).unwrap();
        let text = String::from_utf8_lossy(&file);
        for name in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
            assert!(text.contains(name), "{name}");
        }
        let torch_file = include_bytes!("data/pytorch-batchnorm-19.safetensors");
        let mut t = <Torch as Layer>::Params::ZEROED;
        load_safetensors(torch_file, Naming::Prefixes(&["bn"]), &mut t).unwrap();
        assert_eq!(t.scale, torch::GAMMA);
        assert_eq!(t.shift, torch::BETA);
        assert_eq!(t.running_mean, torch::PLAIN_RUNNING_MEAN_2);
        assert_eq!(t.running_variance, torch::PLAIN_RUNNING_VAR_2);
        // Saved back, it has PyTorch's names and values (without the counter).
        let mut back = <Torch as Layer>::Params::ZEROED;
        let saved = save_safetensors(&t, Naming::Prefixes(&["bn"])).unwrap();
        load_safetensors(&saved, Naming::Prefixes(&["bn"]), &mut back).unwrap();
        assert_eq!(back, t);
    }
}

/// `Seq![Dense, BatchNorm<N>, ActivationLayer<Sigmoid, N>, …]` (the activation as a layer
/// of its own) computes what the fused `BatchNorm<N, Sigmoid>` does, bit for bit: outputs,
/// every gradient and the running statistics after a training step.
#[test]
fn a_separate_activation_layer_equals_the_fused_one() {
    type Separate =
        Seq![Dense<6, 5>, BatchNorm<5>, gradguard::ActivationLayer<Sigmoid, 5>, Dense<5, 2>];
    let (x, y) = net_batch(11);
    let fused = Net::default();
    let separate = Separate::default();
    let mut pf = net_params(12);
    let mut ps = <Separate as Layer>::Params::ZEROED;
    ps.first = pf.first;
    ps.second.first = pf.second.first;
    ps.second.second.second = pf.second.second;
    let (mut gf, mut gs) = (
        <Net as Layer>::Params::ZEROED,
        <Separate as Layer>::Params::ZEROED,
    );
    let mut wf = Workspace::<Net, 8>::ZEROED;
    let mut ws = Workspace::<Separate, 8>::ZEROED;
    let mut sgd = Sgd::new(0.1).unwrap();
    let lf = train_step(
        &fused,
        &mut pf,
        &mut gf,
        &mut wf,
        &mut sgd,
        &MeanSquaredError,
        &x,
        &y,
    )
    .unwrap();
    let ls = train_step(
        &separate,
        &mut ps,
        &mut gs,
        &mut ws,
        &mut sgd,
        &MeanSquaredError,
        &x,
        &y,
    )
    .unwrap();
    assert_eq!(lf.to_bits(), ls.to_bits());
    assert_eq!(gf.first, gs.first);
    assert_eq!(gf.second.first, gs.second.first);
    assert_eq!(gf.second.second, gs.second.second.second);
    assert_eq!(
        pf.second.first, ps.second.first,
        "γ, β and running statistics"
    );
}

/// `BatchNorm::fold_into`: a `Dense` with the folded parameters computes the inference of
/// `Dense` + `BatchNorm` within the rounding of a dot product of the folded terms (checked
/// against f64): per output, |folded − exact| ≤ (IN + 3)·2^-24·(Σ|k·w·x| + |k·(b − m)| + |β|)
/// (one rounding of each k·w, of each product, of each of the IN + 1 additions, and of
/// the folded bias).
#[test]
fn folding_into_the_dense_layer_keeps_the_inference() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(21);
    let mut dense = gradguard::DenseParams::<9, 7> {
        weights: core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0))),
        bias: core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)),
    };
    let stats = gradguard::BatchNormParams::<7> {
        scale: core::array::from_fn(|_| uniform(&mut rng, 0.2, 3.0)),
        shift: core::array::from_fn(|_| uniform(&mut rng, -1.0, 1.0)),
        running_mean: core::array::from_fn(|_| uniform(&mut rng, -2.0, 2.0)),
        running_variance: core::array::from_fn(|_| uniform(&mut rng, 0.1, 4.0)),
    };
    let x: [[f32; 9]; 4] =
        core::array::from_fn(|_| core::array::from_fn(|_| uniform(&mut rng, -3.0, 3.0)));
    let original = dense;
    let bn = BatchNorm::<7>::default();
    bn.fold_into(&stats, &mut dense);
    let mut cache = <Dense<9, 7> as Layer>::Cache::<4>::ZEROED;
    Dense::<9, 7>::default().forward(&dense, &x, &mut cache);
    for (s, row) in x.iter().enumerate() {
        for o in 0..7 {
            let k =
                f64::from(stats.scale[o]) / (f64::from(stats.running_variance[o]) + 1e-5).sqrt();
            let terms: Vec<f64> = (0..9)
                .map(|i| k * f64::from(original.weights[o][i]) * f64::from(row[i]))
                .collect();
            let offset = k * (f64::from(original.bias[o]) - f64::from(stats.running_mean[o]));
            let exact = terms.iter().sum::<f64>() + offset + f64::from(stats.shift[o]);
            let scale = terms.iter().map(|t| t.abs()).sum::<f64>()
                + offset.abs()
                + f64::from(stats.shift[o]).abs();
            let got = f64::from(cache.output[s][o]);
            assert!(
                (got - exact).abs() <= 8.0 * 2f64.powi(-24) * scale,
                "{got} vs {exact}"
            );
        }
    }
}
