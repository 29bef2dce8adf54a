//! Gradient checks: every layer, activation and loss against central finite differences of
//! an independent f64 re-implementation of the same network, on several shapes and random
//! seeds (proptest).

use gradguard::init::{standard_normal, Init};
use gradguard::{
    Activation, ActivationLayer, BinaryCrossEntropyWithLogits, Dense, Elu, GradMode, Identity,
    Layer, LeakyRelu, Loss, MeanSquaredError, Parameters, Relu, Seq, Sigmoid, Softmax,
    SoftmaxCrossEntropy, Softsign, Tanh, Zeroed,
};
use proptest::prelude::*;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// What the f64 network compares its output with.
#[derive(Clone)]
enum Target {
    Rows(Vec<Vec<f64>>),
    Labels(Vec<usize>),
}

#[derive(Clone, Copy, PartialEq)]
enum LossKind {
    Mse,
    SoftmaxCe,
    Bce,
}

/// A plain f64 MLP: `dims[l] → dims[l+1]` dense layers, activation `acts[l]` after each,
/// optionally a softmax at the end; parameters flat in gradguard's tensor order
/// (W₀ row-major, b₀, W₁, b₁, …).
struct ReferenceNet {
    dims: Vec<usize>,
    acts: Vec<fn(f64) -> f64>,
    /// Which layers have a kink at 0 (ReLU family), to stay away from it.
    kinked: Vec<bool>,
    softmax_output: bool,
}

fn softmax64(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

impl ReferenceNet {
    /// Mean loss, and the smallest |z| over kinked units.
    fn loss(&self, theta: &[f64], x: &[Vec<f64>], target: &Target, kind: LossKind) -> (f64, f64) {
        let mut min_kink = f64::INFINITY;
        let mut total = 0.0;
        let batch = x.len();
        for (s, xs) in x.iter().enumerate() {
            let mut h = xs.clone();
            let mut offset = 0;
            for l in 0..self.dims.len() - 1 {
                let (n_in, n_out) = (self.dims[l], self.dims[l + 1]);
                let w = &theta[offset..offset + n_in * n_out];
                let b = &theta[offset + n_in * n_out..offset + n_in * n_out + n_out];
                offset += n_in * n_out + n_out;
                let z: Vec<f64> = (0..n_out)
                    .map(|o| (0..n_in).map(|i| w[o * n_in + i] * h[i]).sum::<f64>() + b[o])
                    .collect();
                if self.kinked[l] {
                    min_kink = z.iter().fold(min_kink, |m, v| m.min(v.abs()));
                }
                h = z.iter().map(|&v| (self.acts[l])(v)).collect();
            }
            if self.softmax_output {
                h = softmax64(&h);
            }
            total += match (kind, target) {
                (LossKind::Mse, Target::Rows(t)) => {
                    h.iter()
                        .zip(&t[s])
                        .map(|(y, t)| (y - t) * (y - t))
                        .sum::<f64>()
                        / h.len() as f64
                }
                (LossKind::Bce, Target::Rows(t)) => {
                    h.iter()
                        .zip(&t[s])
                        .map(|(&z, &t)| z.max(0.0) - z * t + (-z.abs()).exp().ln_1p())
                        .sum::<f64>()
                        / h.len() as f64
                }
                (LossKind::SoftmaxCe, Target::Labels(y)) => -softmax64(&h)[y[s]].ln(),
                _ => unreachable!("loss and target kinds always match"),
            };
        }
        (total / batch as f64, min_kink)
    }
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks `net` (whose first/second/... Dense layers match `reference`) on one seed.
/// Returns Err(reason) only to skip a case too close to a ReLU kink.
#[allow(clippy::too_many_arguments)]
fn check<L, const IN: usize, const OUT: usize, const B: usize>(
    net: L,
    reference: &ReferenceNet,
    kind: LossKind,
    seed: u64,
) -> Result<(), TestCaseError>
where
    L: Layer<Input = [f32; IN], Output = [f32; OUT]>,
{
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut params = Box::new(L::Params::ZEROED);
    net.init(&mut params, Init::XavierNormal, &mut rng);
    // Random biases too, so their gradients are exercised away from zero.
    for i in 0..L::Params::TENSORS {
        for v in params.tensor_mut(i) {
            if *v == 0.0 {
                *v = 0.3 * standard_normal(&mut rng);
            }
        }
    }
    let mut x = [[0.0f32; IN]; B];
    x.iter_mut()
        .flatten()
        .for_each(|v| *v = standard_normal(&mut rng));

    let mut cache = Box::new(L::Cache::<B>::ZEROED);
    net.forward(&params, &x, &mut cache);
    let out = L::output(&cache);
    let mut dy = [[0.0f32; OUT]; B];
    let target = match kind {
        LossKind::SoftmaxCe => {
            let labels: [usize; B] = core::array::from_fn(|_| (rng.next_u32() as usize) % OUT);
            SoftmaxCrossEntropy
                .loss_and_gradient(out, &labels, &mut dy)
                .unwrap();
            Target::Labels(labels.to_vec())
        }
        LossKind::Mse | LossKind::Bce => {
            let mut t = [[0.0f32; OUT]; B];
            t.iter_mut()
                .flatten()
                .for_each(|v| *v = gradguard::init::uniform(&mut rng));
            if kind == LossKind::Mse {
                MeanSquaredError
                    .loss_and_gradient(out, &t, &mut dy)
                    .unwrap();
            } else {
                BinaryCrossEntropyWithLogits
                    .loss_and_gradient(out, &t, &mut dy)
                    .unwrap();
            }
            Target::Rows(
                t.iter()
                    .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                    .collect(),
            )
        }
    };
    let mut grads = Box::new(L::Params::ZEROED);
    let mut dx = [[0.0f32; IN]; B];
    net.backward(
        &params,
        &x,
        &mut cache,
        &dy,
        &mut grads,
        Some(&mut dx),
        GradMode::Overwrite,
    );

    let mut theta: Vec<f64> = (0..L::Params::TENSORS)
        .flat_map(|i| {
            params
                .tensor(i)
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut x64: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let (_, min_kink) = reference.loss(&theta, &x64, &target, kind);
    prop_assume!(
        min_kink > 1e-4,
        "too close to a ReLU kink for finite differences"
    );

    let h = 1e-6;
    let mut numeric = vec![0.0; theta.len()];
    for k in 0..theta.len() {
        let keep = theta[k];
        theta[k] = keep + h;
        let plus = reference.loss(&theta, &x64, &target, kind).0;
        theta[k] = keep - h;
        let minus = reference.loss(&theta, &x64, &target, kind).0;
        theta[k] = keep;
        numeric[k] = (plus - minus) / (2.0 * h);
    }
    let mut offset = 0;
    for i in 0..L::Params::TENSORS {
        let ours = grads.tensor(i);
        let reference = &numeric[offset..offset + ours.len()];
        offset += ours.len();
        compare(ours, reference, &format!("tensor {i}"))?;
    }
    let mut numeric_dx = Vec::new();
    for s in 0..B {
        for i in 0..IN {
            let keep = x64[s][i];
            x64[s][i] = keep + h;
            let plus = reference.loss(&theta, &x64, &target, kind).0;
            x64[s][i] = keep - h;
            let minus = reference.loss(&theta, &x64, &target, kind).0;
            x64[s][i] = keep;
            numeric_dx.push((plus - minus) / (2.0 * h));
        }
    }
    compare(dx.as_flattened(), &numeric_dx, "dx")
}

/// Max error relative to the largest reference entry (floored, so all-zero tensors pass only
/// when ours are tiny too).
fn compare(ours: &[f32], reference: &[f64], what: &str) -> Result<(), TestCaseError> {
    let scale = reference.iter().fold(1e-4f64, |m, v| m.max(v.abs()));
    for (k, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let err = (f64::from(a) - b).abs() / scale;
        prop_assert!(
            err < 2e-3,
            "{what}[{k}]: ours {a:e}, finite differences {b:e} (scale {scale:e})"
        );
    }
    Ok(())
}

fn two_layer(act: fn(f64) -> f64, kinked: bool, i: usize, h: usize, o: usize) -> ReferenceNet {
    ReferenceNet {
        dims: vec![i, h, o],
        acts: vec![act, |v| v],
        kinked: vec![kinked, false],
        softmax_output: false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sigmoid_with_mse(seed in any::<u64>()) {
        check::<Seq![Dense<3, 5, Sigmoid>, Dense<5, 2>], 3, 2, 4>(Default::default(), &two_layer(sigmoid64, false, 3, 5, 2), LossKind::Mse, seed)?;
    }

    #[test]
    fn tanh_with_softmax_cross_entropy(seed in any::<u64>()) {
        check::<Seq![Dense<7, 4, Tanh>, Dense<4, 3>], 7, 3, 2>(Default::default(), &two_layer(f64::tanh, false, 7, 4, 3), LossKind::SoftmaxCe, seed)?;
    }

    #[test]
    fn relu_with_softmax_cross_entropy(seed in any::<u64>()) {
        check::<Seq![Dense<16, 9, Relu>, Dense<9, 5>], 16, 5, 3>(Default::default(), &two_layer(|v| v.max(0.0), true, 16, 9, 5), LossKind::SoftmaxCe, seed)?;
    }

    #[test]
    fn leaky_relu_with_bce(seed in any::<u64>()) {
        let net: Seq![Dense<2, 3, LeakyRelu>, Dense<3, 4>] = Dense::new(LeakyRelu::new(0.2)).then(Dense::new(Identity));
        check::<_, 2, 4, 1>(net, &two_layer(|v| if v > 0.0 { v } else { 0.2 * v }, true, 2, 3, 4), LossKind::Bce, seed)?;
    }

    #[test]
    fn elu_with_mse(seed in any::<u64>()) {
        check::<Seq![Dense<4, 6, Elu>, Dense<6, 2>], 4, 2, 3>(Default::default(), &two_layer(|v| if v > 0.0 { v } else { v.exp_m1() }, false, 4, 6, 2), LossKind::Mse, seed)?;
    }

    #[test]
    fn softsign_with_bce(seed in any::<u64>()) {
        check::<Seq![Dense<1, 1, Softsign>, Dense<1, 1>], 1, 1, 1>(Default::default(), &two_layer(|v| v / (1.0 + v.abs()), false, 1, 1, 1), LossKind::Bce, seed)?;
    }

    #[test]
    fn softmax_layer_with_mse(seed in any::<u64>()) {
        let reference = ReferenceNet { dims: vec![5, 4], acts: vec![|v| v], kinked: vec![false], softmax_output: true };
        check::<Seq![Dense<5, 4>, ActivationLayer<Softmax, 4>], 5, 4, 2>(Default::default(), &reference, LossKind::Mse, seed)?;
    }

    #[test]
    fn three_layers_with_standalone_activation(seed in any::<u64>()) {
        // Dense → tanh layer → Dense(sigmoid) → Dense: exercises every boundary gradient.
        let reference = ReferenceNet {
            dims: vec![6, 5, 4, 3],
            acts: vec![f64::tanh, sigmoid64, |v| v],
            kinked: vec![false, false, false],
            softmax_output: false,
        };
        check::<Seq![Dense<6, 5>, ActivationLayer<Tanh, 5>, Dense<5, 4, Sigmoid>, Dense<4, 3>], 6, 3, 2>(Default::default(), &reference, LossKind::SoftmaxCe, seed)?;
    }
}

#[test]
fn accumulate_mode_adds_to_the_gradients() {
    type Net = Seq![Dense<3, 4, Tanh>, Dense<4, 2>];
    let net = Net::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut p = <Net as Layer>::Params::ZEROED;
    net.init(&mut p, Init::XavierUniform, &mut rng);
    let x = [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]];
    let dy = [[1.0, -2.0], [0.5, 0.25]];
    let mut cache = <Net as Layer>::Cache::<2>::ZEROED;
    net.forward(&p, &x, &mut cache);
    let mut once = <Net as Layer>::Params::ZEROED;
    net.backward(
        &p,
        &x,
        &mut cache,
        &dy,
        &mut once,
        None,
        GradMode::Overwrite,
    );
    let mut twice = once;
    net.backward(
        &p,
        &x,
        &mut cache,
        &dy,
        &mut twice,
        None,
        GradMode::Accumulate,
    );
    for i in 0..<<Net as Layer>::Params as Parameters>::TENSORS {
        for (a, b) in once.tensor(i).iter().zip(twice.tensor(i)) {
            // (a₀+a₁)+a₀+a₁ is summed in another order than 2(a₀+a₁): equal up to rounding.
            assert!((2.0 * a - b).abs() <= 1e-6 * a.abs().max(1e-30), "{a} {b}");
        }
    }
    // Overwrite really overwrites.
    net.backward(
        &p,
        &x,
        &mut cache,
        &dy,
        &mut twice,
        None,
        GradMode::Overwrite,
    );
    assert_eq!(once, twice);
}

/// The Activation trait works on a standalone row: keep the import honest.
#[test]
fn activation_trait_is_usable_directly() {
    let mut a = [0.0; 2];
    Activation::forward(&Relu, &[-1.0, 2.0], &mut a);
    assert_eq!(a, [0.0, 2.0]);
}
