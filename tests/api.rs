//! Losses, optimisers, initialisation, storage and bad input.

use gradguard::init::{fill, Init};
use gradguard::{
    training_bytes, Adam, BinaryCrossEntropyWithLogits, Dense, DenseParams, Error, GradMode, Layer,
    LearningRate, Loss, MeanSquaredError, Momentum, Optimizer, Parameters, Relu, Seq, Sgd, Sigmoid,
    SoftmaxCrossEntropy, TensorKind, Workspace, Zeroed,
};
use proptest::prelude::*;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type Net = Seq![Dense<64, 32, Relu>, Dense<32, 16, Sigmoid>, Dense<16, 10>];
type Params = <Net as Layer>::Params;

// The whole training state of a network as statics: nothing passes through the stack.
static mut PARAMS: Params = Params::ZEROED;
static mut GRADS: Params = Params::ZEROED;
static mut WORKSPACE: Workspace<Net, 8> = Workspace::ZEROED;

#[test]
fn a_network_trains_from_statics() {
    // SAFETY: only this test touches these statics.
    #[allow(static_mut_refs)]
    let (p, g, ws) = unsafe { (&mut PARAMS, &mut GRADS, &mut WORKSPACE) };
    let net = Net::default();
    net.init(
        p,
        Init::HeUniform,
        &mut Xoshiro256PlusPlus::seed_from_u64(9),
    );
    let x = [[0.25; 64]; 8];
    let y = [3; 8];
    let mut sgd = Sgd::new(0.05).unwrap();
    let first =
        gradguard::train_step(&net, p, g, ws, &mut sgd, &SoftmaxCrossEntropy, &x, &y).unwrap();
    let mut last = first;
    for _ in 0..20 {
        last =
            gradguard::train_step(&net, p, g, ws, &mut sgd, &SoftmaxCrossEntropy, &x, &y).unwrap();
    }
    assert!(last < first, "{first} -> {last}");
}

#[test]
fn training_bytes_is_the_sum_of_the_array_sizes() {
    let params = (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10);
    // Per dense layer z, a and dz; per boundary one gradient; the loss gradient.
    let b = 8;
    let cache = 3 * b * (32 + 16 + 10) + b * (32 + 16) + b * 10;
    let arrays = 4 * (2 * params + cache);
    let bytes = training_bytes::<Net, 8>();
    // Where the storage types are cache-line aligned (hosts with SIMD backends), each of
    // the 3 + 3 parameter structs and 3 caches (and the workspace's boundary arrays around
    // them) may be padded to a whole line, and nothing else is added.
    let line = core::mem::align_of::<DenseParams<1, 1>>();
    if line == 4 {
        assert_eq!(bytes, arrays);
    } else {
        assert_eq!(line, 64);
        assert!(
            bytes >= arrays && bytes - arrays < 64 * 12,
            "{bytes} vs {arrays}"
        );
        assert_eq!(bytes % 64, 0);
    }
    assert_eq!(<Params as Parameters>::SCALARS, params);
    // The Adam state is two more copies of the parameters (plus a few scalars).
    assert!(core::mem::size_of::<Adam<Params>>() >= 4 * 2 * params);
}

/// On hosts with SIMD backends the storage types start on a cache line (unaligned rows of
/// W made the batch-1 dX 1.5× slower on AVX-512: `alignment_dx_batch1_128x128` in
/// `benches/peers.rs`), so a parameter row of a multiple of 16 inputs never straddles two.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn storage_types_are_cache_line_aligned_on_hosts() {
    use core::mem::align_of;
    use gradguard::{ActivationCache, BatchNormCache, BatchNormParams, DenseCache};
    assert_eq!(align_of::<DenseParams<3, 2>>(), 64);
    assert_eq!(align_of::<DenseCache<2, 5>>(), 64);
    assert_eq!(align_of::<ActivationCache<2, 5>>(), 64);
    assert_eq!(align_of::<BatchNormParams<3>>(), 64);
    assert_eq!(align_of::<BatchNormCache<3, 5>>(), 64);
    assert_eq!(align_of::<Params>(), 64);
    assert_eq!(align_of::<Workspace<Net, 8>>(), 64);
    assert_eq!(align_of::<Adam<Params>>(), 64);
    let p = Box::new(Params::ZEROED);
    assert_eq!(p.first.weights.as_ptr() as usize % 64, 0);
}

#[test]
fn tensor_info_walks_every_layer_in_order() {
    let infos: Vec<_> = (0..Params::TENSORS)
        .map(|i| Params::tensor_info(i).unwrap())
        .collect();
    let summary: Vec<_> = infos
        .iter()
        .map(|t| (t.layer, t.kind, t.rows, t.cols))
        .collect();
    assert_eq!(
        summary,
        [
            (0, TensorKind::Weight, 32, 64),
            (0, TensorKind::Bias, 32, 1),
            (1, TensorKind::Weight, 16, 32),
            (1, TensorKind::Bias, 16, 1),
            (2, TensorKind::Weight, 10, 16),
            (2, TensorKind::Bias, 10, 1),
        ]
    );
    assert_eq!(Params::tensor_info(6), None);
    let p = Params::ZEROED;
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(p.tensor(i).len(), info.rows * info.cols);
    }
    assert!(p.tensor(6).is_empty());
}

#[test]
fn initialisers_have_the_stated_variance_and_are_deterministic() {
    let (fan_in, fan_out) = (200, 100);
    for init in [
        Init::StandardNormal,
        Init::XavierUniform,
        Init::XavierNormal,
        Init::HeUniform,
        Init::HeNormal,
    ] {
        let mut w = vec![0.0f32; fan_in * fan_out];
        fill(
            &mut w,
            fan_in,
            fan_out,
            init,
            &mut Xoshiro256PlusPlus::seed_from_u64(42),
        );
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = w
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let want = f64::from(init.standard_deviation(fan_in, fan_out)).powi(2);
        assert!(
            mean.abs() < 4.0 * (want / n).sqrt(),
            "{init:?}: mean {mean}"
        );
        assert!(
            (var / want - 1.0).abs() < 0.03,
            "{init:?}: variance {var} vs {want}"
        );
        let mut again = vec![0.0f32; fan_in * fan_out];
        fill(
            &mut again,
            fan_in,
            fan_out,
            init,
            &mut Xoshiro256PlusPlus::seed_from_u64(42),
        );
        assert_eq!(w, again, "{init:?} must be deterministic for a seed");
        if matches!(init, Init::XavierUniform | Init::HeUniform) {
            let limit = f64::from(init.standard_deviation(fan_in, fan_out)) * 3f64.sqrt();
            assert!(w.iter().all(|&v| f64::from(v).abs() <= limit));
        }
    }
    // Same seed, same weights, bit for bit: a fixed fingerprint guards against silent
    // changes of the sampling (firmware compares against host-generated constants).
    let mut w = [0.0f32; 4];
    fill(
        &mut w,
        2,
        2,
        Init::StandardNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
    );
    let again = {
        let mut v = [0.0f32; 4];
        fill(
            &mut v,
            2,
            2,
            Init::StandardNormal,
            &mut Xoshiro256PlusPlus::seed_from_u64(1),
        );
        v
    };
    assert_eq!(w.map(f32::to_bits), again.map(f32::to_bits));
}

#[test]
fn losses_match_hand_computed_values() {
    let mut g = [[0.0; 3]; 2];
    let l = SoftmaxCrossEntropy
        .loss_and_gradient(&[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], &[2, 0], &mut g)
        .unwrap();
    let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
    let s: f64 = e.iter().sum();
    let expected = (-(e[2] / s).ln() + 3f64.ln()) / 2.0;
    assert!((f64::from(l) - expected).abs() < 1e-6);
    assert!((f64::from(g[0][2]) - (e[2] / s - 1.0) / 2.0).abs() < 1e-7);
    assert!((f64::from(g[1][1]) - 1.0 / 6.0).abs() < 1e-7);

    // Huge logits: no overflow, no NaN, the loss is the logit gap.
    let l = SoftmaxCrossEntropy
        .loss_and_gradient(&[[3e38, -3e38]], &[1], &mut [[0.0; 2]])
        .unwrap();
    assert_eq!(l, f32::INFINITY); // the gap 6e38 itself overflows f32: ∞, honestly
    let l = SoftmaxCrossEntropy
        .loss_and_gradient(&[[1e30, 0.0]], &[1], &mut [[0.0; 2]])
        .unwrap();
    assert_eq!(l, 1e30);

    let mut g = [[0.0; 2]; 1];
    let l = BinaryCrossEntropyWithLogits
        .loss_and_gradient(&[[100.0, -100.0]], &[[1.0, 0.0]], &mut g)
        .unwrap();
    assert!(
        (0.0..1e-30).contains(&l),
        "confident and right: tiny loss, got {l}"
    );
    assert!(
        g[0][0] < 0.0 && g[0][0] > -1e-30,
        "tiny but nonzero gradient: {}",
        g[0][0]
    );
    let l = BinaryCrossEntropyWithLogits
        .loss_and_gradient(&[[-100.0]], &[[1.0]], &mut [[0.0]])
        .unwrap();
    assert_eq!(l, 100.0);
}

#[test]
fn invalid_targets_and_hyperparameters_are_errors_not_panics() {
    let mut g = [[7.0; 3]; 1];
    assert_eq!(
        SoftmaxCrossEntropy.loss_and_gradient(&[[0.0; 3]], &[3], &mut g),
        Err(Error::LabelOutOfRange {
            label: 3,
            classes: 3
        })
    );
    assert_eq!(g, [[7.0; 3]], "no write on error");
    assert_eq!(
        BinaryCrossEntropyWithLogits.loss_and_gradient(&[[0.0]], &[[1.5]], &mut [[0.0]]),
        Err(Error::TargetOutOfRange(1.5))
    );
    assert!(matches!(
        BinaryCrossEntropyWithLogits.loss_and_gradient(&[[0.0]], &[[f32::NAN]], &mut [[0.0]]),
        Err(Error::TargetOutOfRange(_))
    ));
    for lr in [0.0, -0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(
            matches!(Sgd::new(lr), Err(Error::InvalidLearningRate(_))),
            "{lr}"
        );
        assert!(
            matches!(Adam::<Params>::new(lr), Err(Error::InvalidLearningRate(_))),
            "{lr}"
        );
    }
    let sgd = Sgd::new(0.1).unwrap();
    assert!(sgd.with_weight_decay(f32::NAN).is_err());
    assert!(Momentum::<Params>::new(sgd, -0.1).is_err());
    assert!(Momentum::<Params>::new(sgd, f32::NAN).is_err());
    assert!(Adam::<Params>::with_hyperparameters(0.1, 1.0, 0.999, 1e-8, 0.0).is_err());
    assert!(Adam::<Params>::with_hyperparameters(0.1, 0.9, 0.999, 0.0, 0.0).is_err());
    let mut m = Momentum::<Params>::new(sgd, 0.9).unwrap();
    assert!(m.set_learning_rate(f32::NAN).is_err());
    assert_eq!(
        m.learning_rate(),
        0.1,
        "a rejected learning rate changes nothing"
    );
    assert!(format!(
        "{}",
        Error::LabelOutOfRange {
            label: 3,
            classes: 3
        }
    )
    .contains("label 3"));
}

/// A He-initialised `Net` (seed 1) with zeroed gradients and workspace, on the heap.
fn fresh_training_state() -> (Net, Box<Params>, Box<Params>, Box<Workspace<Net, 8>>) {
    let net = Net::default();
    let mut p = Box::new(Params::ZEROED);
    net.init(
        &mut p,
        Init::HeNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
    );
    (
        net,
        p,
        Box::new(Params::ZEROED),
        Box::new(Workspace::ZEROED),
    )
}

#[test]
fn a_bad_label_in_train_step_changes_no_parameter() {
    let (net, mut p, mut g, mut ws) = fresh_training_state();
    let before = *p;
    let mut y = [0usize; 8];
    y[5] = 10;
    let r = gradguard::train_step(
        &net,
        &mut p,
        &mut g,
        &mut ws,
        &mut Sgd::new(0.1).unwrap(),
        &SoftmaxCrossEntropy,
        &[[0.5; 64]; 8],
        &y,
    );
    assert_eq!(
        r,
        Err(Error::LabelOutOfRange {
            label: 10,
            classes: 10
        })
    );
    assert_eq!(*p, before);
}

#[test]
fn nan_and_infinity_propagate_through_a_training_step() {
    let (net, mut p, mut g, mut ws) = fresh_training_state();
    let mut x = [[0.5f32; 64]; 8];
    x[2][7] = f32::NAN;
    x[4][0] = f32::INFINITY;
    let loss = gradguard::train_step(
        &net,
        &mut p,
        &mut g,
        &mut ws,
        &mut Adam::new(0.01).unwrap(),
        &SoftmaxCrossEntropy,
        &x,
        &[1; 8],
    )
    .unwrap();
    assert!(
        loss.is_nan(),
        "a NaN input must show up in the loss, got {loss}"
    );
    assert!(g.first.weights.iter().flatten().any(|v| v.is_nan()));
}

#[test]
fn optimisers_reduce_a_quadratic() {
    // f(w) = ½‖w − c‖², gradient w − c.
    type P = <Dense<3, 2> as Layer>::Params;
    let c = [1.0f32, -2.0, 0.5, 3.0, 0.0, -1.0, 2.0, 1.0];
    fn run(opt: &mut impl Optimizer<P>, c: &[f32; 8], steps: usize) -> f32 {
        let (mut p, mut g) = (P::ZEROED, P::ZEROED);
        for _ in 0..steps {
            let flat: Vec<f32> = (0..2).flat_map(|i| p.tensor(i).to_vec()).collect();
            let mut k = 0;
            for i in 0..2 {
                for v in g.tensor_mut(i) {
                    *v = flat[k] - c[k];
                    k += 1;
                }
            }
            opt.step(&mut p, &g);
        }
        let flat: Vec<f32> = (0..2).flat_map(|i| p.tensor(i).to_vec()).collect();
        flat.iter()
            .zip(c)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
    assert!(run(&mut Sgd::new(0.1).unwrap(), &c, 300) < 1e-5);
    assert!(
        run(
            &mut Momentum::new(Sgd::new(0.05).unwrap(), 0.9).unwrap(),
            &c,
            400
        ) < 1e-4
    );
    assert!(run(&mut Adam::new(0.05).unwrap(), &c, 1000) < 1e-3);
    // Weight decay pulls towards 0: the fixed point is c / (1 + λ).
    let sgd = Sgd::new(0.1).unwrap().with_weight_decay(1.0).unwrap();
    let err = run(&mut sgd.clone(), &c.map(|v| v * 2.0), 500);
    assert!(err > 0.4, "with λ = 1 the weights stop halfway: {err}");
}

proptest! {
    #[test]
    fn mse_gradient_matches_its_definition(y in prop::array::uniform4(-1e3f32..1e3), t in prop::array::uniform4(-1e3f32..1e3)) {
        let mut g = [[0.0; 2]; 2];
        let out = [[y[0], y[1]], [y[2], y[3]]];
        let tgt = [[t[0], t[1]], [t[2], t[3]]];
        let l = MeanSquaredError.loss_and_gradient(&out, &tgt, &mut g).unwrap();
        let want: f64 = (0..4).map(|k| (f64::from(y[k]) - f64::from(t[k])).powi(2)).sum::<f64>() / 4.0;
        prop_assert!((f64::from(l) - want).abs() <= 1e-5 * want.max(1.0));
        for k in 0..4 {
            prop_assert!((f64::from(g[k / 2][k % 2]) - (f64::from(y[k]) - f64::from(t[k])) / 2.0).abs() <= 1e-4);
        }
    }

    #[test]
    fn softmax_cross_entropy_never_panics_and_is_finite_for_finite_logits(
        z in prop::array::uniform5(-3e38f32..3e38), label in 0usize..8
    ) {
        let mut g = [[0.0; 5]; 1];
        match SoftmaxCrossEntropy.loss_and_gradient(&[z], &[label], &mut g) {
            Ok(l) => {
                prop_assert!(label < 5);
                prop_assert!(!l.is_nan() && l >= 0.0);
                prop_assert!(g[0].iter().all(|v| v.is_finite()));
                let sum: f32 = g[0].iter().sum();
                prop_assert!(sum.abs() < 1e-6, "gradient rows of softmax − onehot sum to 0: {sum}");
            }
            Err(e) => prop_assert_eq!(e, Error::LabelOutOfRange { label, classes: 5 }),
        }
    }
}

#[test]
fn backward_without_input_gradient_matches_with_it() {
    let net = Net::default();
    let mut p = Box::new(Params::ZEROED);
    net.init(
        &mut p,
        Init::XavierNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(3),
    );
    let x = [[0.1f32; 64]; 8];
    let dy = [[0.01f32; 10]; 8];
    let mut c = Box::new(<Net as Layer>::Cache::<8>::ZEROED);
    net.forward(&p, &x, &mut c);
    let (mut g1, mut g2) = (Box::new(Params::ZEROED), Box::new(Params::ZEROED));
    let mut dx = [[0.0f32; 64]; 8];
    net.backward(&p, &x, &mut c, &dy, &mut g1, None, GradMode::Overwrite);
    net.backward(
        &p,
        &x,
        &mut c,
        &dy,
        &mut g2,
        Some(&mut dx),
        GradMode::Overwrite,
    );
    assert_eq!(*g1, *g2);
    assert!(dx.iter().flatten().any(|&v| v != 0.0));
}

/// Defect: the first kernel call's backend detection used a plain store, so a `set_backend`
/// on another thread at the same moment could be silently undone. Each child process (this
/// test binary re-run for `set_backend_wins_a_race_with_first_use_child` only, so its
/// backend is undecided) races the two; the user's choice must stand in every one.
#[test]
#[cfg(not(target_family = "wasm"))]
fn set_backend_wins_a_race_with_first_use() {
    let exe = std::env::current_exe().unwrap();
    let children = 64;
    let mut lost = 0;
    for _ in 0..children {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "set_backend_wins_a_race_with_first_use_child",
                "--nocapture",
            ])
            .env("GRADGUARD_RACE_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("1 passed") || stdout.contains("RACE LOST"),
            "{stdout}"
        );
        lost += usize::from(stdout.contains("RACE LOST"));
    }
    assert_eq!(
        lost, 0,
        "set_backend was undone in {lost} of {children} processes"
    );
}

#[test]
fn set_backend_wins_a_race_with_first_use_child() {
    use gradguard::kernels::{backend, set_backend, Backend};
    if std::env::var_os("GRADGUARD_RACE_CHILD").is_none() {
        return; // only meaningful in a fresh process started by the test above
    }
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            set_backend(Backend::Scalar).unwrap();
        });
        s.spawn(|| {
            start.wait();
            let _ = backend(); // first use: detects the best backend
        });
    });
    if backend() != Backend::Scalar {
        println!("RACE LOST");
    }
}

#[test]
fn public_integer_functions_do_not_overflow_at_the_extremes() {
    use gradguard::datasets::digits;
    use gradguard::kernels::matrix_error_bound;
    // (init's index sampler has its own unit test.)
    for i in [
        digits::SAMPLES,
        usize::MAX / 65,
        usize::MAX / 65 + 1,
        usize::MAX,
    ] {
        assert_eq!(digits::features(i), None, "features({i})");
        assert_eq!(digits::label(i), None, "label({i})");
    }
    assert!(digits::label(digits::SAMPLES - 1).is_some());
    assert_eq!(matrix_error_bound(usize::MAX, 1.0), f64::INFINITY);
    assert_eq!(matrix_error_bound(1 << 24, 1.0), f64::INFINITY);
    let just_below = matrix_error_bound((1 << 24) - 2, 1.0);
    assert!(just_below.is_finite() && just_below > 1.0, "{just_below}");
}

type Small = <Dense<3, 2> as Layer>::Params;

/// Every scalar of a parameter set.
fn scalars(p: &Small) -> Vec<f32> {
    (0..Small::TENSORS)
        .flat_map(|i| p.tensor(i).to_vec())
        .collect()
}

/// Defect: ε = 1e-45 was accepted, ε·√(1−β2^t) underflowed to 0 and a zero gradient gave
/// 0/0 = NaN in every weight. Now every accepted ε keeps zero gradients finite.
#[test]
fn adam_never_turns_zero_gradients_into_nan() {
    let min = Adam::<Small>::MIN_EPSILON;
    for eps in [1e-45, 1e-40, 1e-38, min / 2.0, min, 1e-30, 1e-8] {
        let Ok(mut adam) = Adam::<Small>::with_hyperparameters(0.1, 0.9, 0.999, eps, 0.0) else {
            assert!(eps < min, "ε = {eps:e} rejected although ≥ MIN_EPSILON");
            continue;
        };
        let (mut p, g) = (Small::ZEROED, Small::ZEROED);
        p.weights = [[1.0, -2.0, 3.0], [0.5, 0.0, -0.25]];
        for _ in 0..5 {
            adam.step(&mut p, &g);
        }
        assert!(
            scalars(&p).iter().all(|v| v.is_finite()),
            "ε = {eps:e}: {p:?}"
        );
    }
    for eps in [0.0, -1e-8, f32::NAN, f32::INFINITY, 1e-45] {
        let e = Adam::<Small>::with_hyperparameters(0.1, 0.9, 0.999, eps, 0.0).unwrap_err();
        assert!(
            matches!(e, Error::InvalidHyperparameter("epsilon", v) if v.to_bits() == eps.to_bits()),
            "{e:?}"
        );
    }
}

/// Defect: one finite gradient of 1e20 made v = g² = +∞ and froze the weight forever
/// (m/√∞ = 0). Now v saturates at f32::MAX and decays, and the weight learns again.
#[test]
fn one_gradient_spike_does_not_freeze_adam() {
    let mut adam = Adam::<Small>::new(0.01).unwrap();
    let (mut p, mut g) = (Small::ZEROED, Small::ZEROED);
    g.weights[0][0] = 1e20;
    adam.step(&mut p, &g);
    assert!(p.weights[0][0].is_finite());
    g.weights[0][0] = 1.0;
    let mut previous = p.weights[0][0];
    for step in 0..50 {
        adam.step(&mut p, &g);
        let w = p.weights[0][0];
        assert!(
            w.is_finite() && w < previous,
            "step {step}: {previous} -> {w}"
        );
        previous = w;
    }
}

fn finite_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1e3f32..1e3,
        Just(0.0),
        Just(f32::MAX),
        Just(-f32::MAX),
        Just(1e20),
        Just(-3e19),
        Just(f32::from_bits(1)),
        Just(f32::MIN_POSITIVE),
        (-1e38f32..1e38),
    ]
}

fn unit_interval() -> impl Strategy<Value = f32> {
    prop_oneof![
        0.0f32..1.0,
        Just(0.0),
        Just(0.999_999_94),
        Just(0.9),
        Just(0.999)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adam, for every accepted hyper-parameter combination (extremes included), keeps
    /// finite parameters finite over many steps of arbitrary finite gradients.
    #[test]
    fn adam_keeps_finite_parameters_finite(
        lr in prop_oneof![Just(f32::MAX), Just(1e-30f32), 1e-6f32..10.0],
        beta1 in unit_interval(),
        beta2 in unit_interval(),
        eps in prop_oneof![Just(Adam::<Small>::MIN_EPSILON), Just(1e-8f32), 1e-30f32..1.0],
        decay in prop_oneof![Just(0.0f32), Just(f32::MAX), 0.0f32..10.0],
        start in proptest::collection::vec(finite_value(), 8),
        grads in proptest::collection::vec(proptest::collection::vec(finite_value(), 8), 1..20),
    ) {
        let mut adam = Adam::<Small>::with_hyperparameters(lr, beta1, beta2, eps, decay).unwrap();
        let mut p = Small::ZEROED;
        for (i, v) in start.iter().enumerate() { p.tensor_mut(i / 6)[i % 6] = *v; }
        let mut g = Small::ZEROED;
        for step in grads {
            for (i, v) in step.iter().enumerate() { g.tensor_mut(i / 6)[i % 6] = *v; }
            adam.step(&mut p, &g);
            prop_assert!(scalars(&p).iter().all(|v| v.is_finite()), "{:?}", p);
        }
    }

    /// SGD and momentum: finite parameters stay finite over many steps whenever no update
    /// can exceed f32::MAX (|g|, |w| ≤ 1e20, lr·λ ≤ 1); beyond that an update overflows to
    /// ±∞ as IEEE arithmetic does (documented on `Sgd`), never to NaN in one step.
    #[test]
    fn sgd_and_momentum_keep_finite_parameters_finite(
        lr in prop_oneof![Just(1e-30f32), 1e-6f32..1.0],
        mu in unit_interval(),
        decay in prop_oneof![Just(0.0f32), 0.0f32..1.0],
        start in proptest::collection::vec(-1e20f32..1e20, 8),
        grads in proptest::collection::vec(proptest::collection::vec(-1e20f32..1e20, 8), 1..20),
        huge in proptest::collection::vec(finite_value(), 8),
        huge_lr in prop_oneof![Just(f32::MAX), 1e-3f32..1e3],
    ) {
        let sgd = Sgd::new(lr).unwrap().with_weight_decay(decay).unwrap();
        let mut momentum = Momentum::<Small>::new(sgd, mu).unwrap();
        let (mut p, mut q, mut g) = (Small::ZEROED, Small::ZEROED, Small::ZEROED);
        for (i, v) in start.iter().enumerate() { p.tensor_mut(i / 6)[i % 6] = *v; }
        q.clone_from(&p);
        let mut plain = sgd;
        for step in grads {
            for (i, v) in step.iter().enumerate() { g.tensor_mut(i / 6)[i % 6] = *v; }
            plain.step(&mut p, &g);
            momentum.step(&mut q, &g);
            prop_assert!(scalars(&p).iter().all(|v| v.is_finite()), "sgd {:?}", p);
            prop_assert!(scalars(&q).iter().all(|v| v.is_finite()), "momentum {:?}", q);
        }
        // One step from any finite state never produces NaN (at worst ±∞ on overflow).
        let mut sgd = Sgd::new(huge_lr).unwrap().with_weight_decay(decay).unwrap();
        for (i, v) in huge.iter().enumerate() { g.tensor_mut(i / 6)[i % 6] = *v; }
        sgd.step(&mut p, &g);
        prop_assert!(scalars(&p).iter().all(|v| !v.is_nan()), "{:?}", p);
    }
}

type Huge = <Dense<1024, 1024> as Layer>::Params;
static mut HUGE_PARAMS: Huge = Huge::ZEROED;
static mut HUGE_GRADS: Huge = Huge::ZEROED;
static mut HUGE_ADAM: Adam<Huge> = Adam::ZEROED;
static mut HUGE_MOMENTUM: Momentum<Huge> = Momentum::ZEROED;

/// Defect: `Adam::new` built its state as a value, so the 8 MiB of moments of a 1024×1024
/// layer overflowed an 8 MiB stack. The zeroed `static` plus `configure` in place trains it
/// on a thread with 256 KiB of stack (any copy of the state there would overflow it).
#[test]
fn optimiser_state_never_passes_through_the_stack() {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            // SAFETY: only this test touches these statics.
            #[allow(static_mut_refs)]
            let (p, g, adam, momentum) = unsafe {
                (
                    &mut HUGE_PARAMS,
                    &mut HUGE_GRADS,
                    &mut HUGE_ADAM,
                    &mut HUGE_MOMENTUM,
                )
            };
            // Unconfigured optimisers leave the parameters alone.
            g.weights[3][5] = 1.0;
            adam.step(p, g);
            momentum.step(p, g);
            assert_eq!(p.weights[3][5], 0.0);
            adam.configure(0.1, 0.9, 0.999, 1e-8, 0.0).unwrap();
            momentum.configure(Sgd::new(0.1).unwrap(), 0.9).unwrap();
            adam.step(p, g);
            assert!((p.weights[3][5] + 0.1).abs() < 1e-6, "{}", p.weights[3][5]);
            momentum.step(p, g);
            assert!((p.weights[3][5] + 0.2).abs() < 1e-6, "{}", p.weights[3][5]);
            assert!(adam.configure(0.1, 0.9, 0.999, 0.0, 0.0).is_err());
            assert_eq!(
                gradguard::LearningRate::learning_rate(adam),
                0.1,
                "unchanged on error"
            );
            // Reset in place too.
            p.set_zero();
            assert_eq!(p.weights[3][5], 0.0);
        })
        .unwrap()
        .join()
        .unwrap();
}

mod properties {
    use super::*;
    use gradguard::health::{HealthConfig, HealthReport};
    use gradguard::init::shuffle;
    use gradguard::{train_step, Tanh, Trainer};

    fn any_init() -> impl Strategy<Value = Init> {
        prop_oneof![
            Just(Init::Zeros),
            Just(Init::StandardNormal),
            Just(Init::XavierUniform),
            Just(Init::XavierNormal),
            Just(Init::HeUniform),
            Just(Init::HeNormal),
        ]
    }

    fn fan() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..100,
            Just(usize::MAX),
            Just(1 << 40),
            1usize..100_000
        ]
    }

    type Tiny = Seq![Dense<4, 6, Tanh>, Dense<6, 3, Relu>, Dense<3, 2>];
    type TinyParams = <Tiny as Layer>::Params;

    fn sample() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -3.0f32..3.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(1e30f32),
            1 => Just(1e-40f32),
            1 => Just(0.0f32),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every scheme draws finite weights, within ±√3·σ for the uniform ones and the
        /// Box–Muller bound √(2·ln 2^24)·σ (u1 ≥ 2^-24) for the normal ones, the same bits
        /// for the same seed, for any fan-in/fan-out (0 and usize::MAX included).
        #[test]
        fn init_is_finite_bounded_and_reproducible(
            init in any_init(),
            fan_in in fan(),
            fan_out in fan(),
            seed in any::<u64>(),
            n in 0usize..300,
        ) {
            let (mut a, mut b) = (vec![7.0f32; n], vec![-7.0f32; n]);
            fill(&mut a, fan_in, fan_out, init, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            fill(&mut b, fan_in, fan_out, init, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            prop_assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let std = init.standard_deviation(fan_in, fan_out);
            prop_assert!(std.is_finite() && std >= 0.0);
            let limit = match init {
                Init::XavierUniform | Init::HeUniform => std * 3f32.sqrt(),
                _ => std * (2.0 * 24.0 * core::f32::consts::LN_2).sqrt(),
            } * (1.0 + 1e-6);
            for &w in &a {
                prop_assert!(w.is_finite() && w.abs() <= limit, "{} beyond {}", w, limit);
            }
        }

        /// shuffle permutes (same multiset) for every length.
        #[test]
        fn shuffle_is_a_permutation(n in 0usize..500, seed in any::<u64>()) {
            let mut v: Vec<usize> = (0..n).collect();
            shuffle(&mut v, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            v.sort_unstable();
            prop_assert_eq!(v, (0..n).collect::<Vec<_>>());
        }

        /// A workspace reused across batches (whatever the previous batch left in it, NaN
        /// included) gives the same parameters, bit for bit, as a fresh one per step.
        #[test]
        fn workspace_reuse_across_batches_matches_a_fresh_workspace(
            batches in proptest::collection::vec(proptest::collection::vec(sample(), 4 * 4), 1..6),
            labels in proptest::collection::vec(0usize..2, 4),
        ) {
            let net = Tiny::default();
            let mut start = TinyParams::ZEROED;
            net.init(&mut start, Init::XavierUniform, &mut Xoshiro256PlusPlus::seed_from_u64(3));
            let (mut reused, mut fresh) = (start, start);
            let mut g = TinyParams::ZEROED;
            let mut ws = Workspace::<Tiny, 4>::ZEROED;
            let (mut sgd_a, mut sgd_b) = (Sgd::new(0.1).unwrap(), Sgd::new(0.1).unwrap());
            let y: [usize; 4] = core::array::from_fn(|s| labels[s]);
            for values in &batches {
                let x: [[f32; 4]; 4] = core::array::from_fn(|s| core::array::from_fn(|i| values[4 * s + i]));
                let a = train_step(&net, &mut reused, &mut g, &mut ws, &mut sgd_a, &SoftmaxCrossEntropy, &x, &y).unwrap();
                let mut new_ws = Workspace::<Tiny, 4>::ZEROED;
                let b = train_step(&net, &mut fresh, &mut g, &mut new_ws, &mut sgd_b, &SoftmaxCrossEntropy, &x, &y).unwrap();
                prop_assert_eq!(a.to_bits(), b.to_bits());
                let bits = |p: &TinyParams| (0..TinyParams::TENSORS).flat_map(|i| p.tensor(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&reused), bits(&fresh));
            }
        }

        /// The flags are exactly the documented conditions on the per-layer records (first
        /// layer from the output that meets each), Exploding is raised iff a gradient the
        /// step computed is NaN/∞ or a ‖dW‖ exceeds the threshold, and nothing panics, for
        /// arbitrary inputs (NaN, ∞, huge, subnormal).
        #[test]
        fn health_flags_follow_their_definitions(
            values in proptest::collection::vec(sample(), 4 * 4),
            scale in prop_oneof![Just(1.0f32), Just(1e-20), Just(1e15)],
            labels in proptest::collection::vec(0usize..2, 4),
        ) {
            let net = Tiny::default();
            let mut p = TinyParams::ZEROED;
            net.init(&mut p, Init::XavierUniform, &mut Xoshiro256PlusPlus::seed_from_u64(4));
            for i in 0..TinyParams::TENSORS {
                p.tensor_mut(i).iter_mut().for_each(|w| *w *= scale);
            }
            let mut g = TinyParams::ZEROED;
            let mut ws = Workspace::<Tiny, 4>::ZEROED;
            let mut report = HealthReport::<3>::new(HealthConfig::DEFAULT);
            let x: [[f32; 4]; 4] = core::array::from_fn(|s| core::array::from_fn(|i| values[4 * s + i]));
            let y: [usize; 4] = core::array::from_fn(|s| labels[s]);
            let mut sgd = Sgd::new(0.01).unwrap();
            let before = p;
            Trainer::new(&net, &mut p, &mut g, &mut ws, &mut sgd, &SoftmaxCrossEntropy).step_observed(&x, &y, &mut report).unwrap();
            let flags = report.flags();
            let c = report.config;
            let layers = report.layers_from_output();
            prop_assert_eq!(layers.len(), 3);
            let output = layers[0].pre_activation_grad.l2_norm();
            let first = |cond: &dyn Fn(&gradguard::health::LayerHealth) -> bool| {
                layers.iter().find(|l| cond(l)).map(|l| l.layer)
            };
            prop_assert_eq!(flags.underflow, first(&|l| l.underflow_count() > 0));
            prop_assert_eq!(flags.vanishing, first(&|l| output > 0.0 && l.pre_activation_grad.l2_norm() / output < c.vanishing_ratio));
            prop_assert_eq!(flags.dead_units, first(&|l| l.dead_units > 0));
            prop_assert_eq!(flags.saturated, first(&|l| l.saturated_units > 0));
            prop_assert_eq!(flags.stalled, first(&|l| l.non_finite_count() == 0 && l.update_ratio(0.01) < c.stalled_update_ratio));
            // Exploding from the gradients themselves (f64 norms, independent of the report).
            let mut exploding = None;
            for layer in (0..3u16).rev() {
                let (w, b) = (g.tensor(2 * layer as usize), g.tensor(2 * layer as usize + 1));
                let non_finite = w.iter().chain(b).any(|v| !v.is_finite());
                let norm = w.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
                // Near the threshold the f32 norm may round either way.
                prop_assume!((norm / f64::from(c.exploding_norm) - 1.0).abs() > 1e-4);
                if exploding.is_none() && (non_finite || norm > f64::from(c.exploding_norm)) {
                    exploding = Some(layer);
                }
            }
            // The dz of a layer is NaN/∞ only if its dW or db is, or its inputs are: counted too.
            let dz_non_finite = layers.iter().any(|l| l.pre_activation_grad.counts.non_finite() > 0);
            if !dz_non_finite {
                prop_assert_eq!(flags.exploding, exploding);
            } else {
                prop_assert!(flags.exploding.is_some());
            }
            prop_assert_eq!(report.learning_rate, 0.01);
            // The report is taken before the update: the weight norm is that of `before`.
            let w0 = before.tensor(4).iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            let reported = f64::from(layers[0].weight_norm);
            prop_assert!((reported - w0).abs() <= 1e-5 * w0, "{} vs {}", reported, w0);
        }
    }
}

/// Every value of `p`'s tensors as bits, in order.
fn bits<P: Parameters>(p: &P) -> Vec<u32> {
    (0..P::TENSORS)
        .flat_map(|i| p.tensor(i).iter().map(|v| v.to_bits()))
        .collect()
}

/// Parameter and optimiser images (`gradguard::image`): round trips, every corruption
/// refused with the destination unchanged, a golden image, resumed training.
mod images {
    use super::*;
    use gradguard::image::{self, ImageError, NonFinite, Persistent};

    type Small = <Dense<3, 2> as Layer>::Params;
    type Transposed = <Dense<2, 3> as Layer>::Params;
    type Deep = <Seq![Dense<5, 4, Relu>, Dense<4, 3, Sigmoid>, Dense<3, 2>] as Layer>::Params;

    fn filled<P: Parameters>(seed: u64) -> P {
        let mut p = P::ZEROED;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for i in 0..P::TENSORS {
            fill(p.tensor_mut(i), 4, 4, Init::StandardNormal, &mut rng);
        }
        p
    }

    fn image_of<S: Persistent>(state: &S) -> Vec<u8> {
        let mut out = vec![0u8; S::IMAGE_BYTES];
        assert_eq!(image::save(state, &mut out), Ok(S::IMAGE_BYTES));
        out
    }

    /// Writes a valid checksum over a (modified) image, so that a test reaches the check
    /// behind it.
    fn reseal(img: &mut [u8]) {
        let mut covered = img[..28].to_vec();
        covered.extend_from_slice(&img[32..]);
        let crc = image::crc32(&covered);
        img[28..32].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn the_size_is_the_header_plus_four_bytes_per_value() {
        fn slices<S: Persistent + Zeroed>() -> usize {
            let s = S::ZEROED;
            (0..S::SLICES).map(|i| s.slice(i).len()).sum()
        }
        fn check<P: Parameters>() {
            let values: usize = (0..P::TENSORS).map(|i| P::ZEROED.tensor(i).len()).sum();
            assert_eq!(slices::<P>(), <P as Persistent>::VALUES);
            assert_eq!(slices::<Momentum<P>>(), <Momentum<P> as Persistent>::VALUES);
            assert_eq!(slices::<Adam<P>>(), <Adam<P> as Persistent>::VALUES);
            assert_eq!(P::SCALARS, values);
            assert_eq!(<P as Persistent>::IMAGE_BYTES, 32 + 4 * values);
            assert_eq!(
                <Momentum<P> as Persistent>::IMAGE_BYTES,
                32 + 4 * (3 + values)
            );
            assert_eq!(
                <Adam<P> as Persistent>::IMAGE_BYTES,
                32 + 4 * (7 + 2 * values)
            );
        }
        check::<Small>();
        check::<Deep>();
        check::<Params>();
        assert_eq!(<Params as Persistent>::IMAGE_BYTES, 32 + 4 * 2_778);
    }

    /// The format is fixed: bytes computed independently (Python's struct and zlib.crc32).
    #[test]
    fn a_one_weight_network_has_the_documented_bytes() {
        let mut p = <Dense<1, 1> as Layer>::Params::ZEROED;
        p.weights[0][0] = 1.0;
        p.bias[0] = -2.0;
        #[rustfmt::skip]
        let golden: [u8; 40] = [
            0x47, 0x47, 0x50, 0x49, 0x01, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x58, 0x20, 0xfb, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xf7, 0x88, 0x10, 0x5c, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,
        ];
        assert_eq!(image_of(&p), golden);
        assert_eq!(image::crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn every_single_bit_flip_is_refused_and_leaves_the_destination_unchanged() {
        let img = image_of(&filled::<Small>(1));
        let before = filled::<Small>(2);
        for bit in 0..img.len() * 8 {
            let mut bad = img.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut dest = before;
            let r = image::load(&bad, &mut dest, NonFinite::Accept);
            assert!(matches!(r, Err(Error::Image(_))), "bit {bit}: {r:?}");
            assert_eq!(bits(&dest), bits(&before), "bit {bit}");
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let img = image_of(&filled::<Deep>(3));
        for len in 0..img.len() {
            let mut dest = Deep::ZEROED;
            assert_eq!(
                image::load(&img[..len], &mut dest, NonFinite::Reject),
                Err(Error::Image(ImageError::TooShort {
                    needed: img.len(),
                    available: len
                }))
            );
            assert_eq!(bits(&dest), bits(&Deep::ZEROED));
        }
        let mut short = vec![0u8; img.len() - 1];
        assert!(image::save(&filled::<Deep>(3), &mut short).is_err());
        assert!(
            short.iter().all(|&b| b == 0),
            "save wrote into a short buffer"
        );
    }

    #[test]
    fn another_shape_or_content_is_refused() {
        let img = image_of(&filled::<Small>(4));
        // Dense<2, 3> has as many values (8) as Dense<3, 2>: only the signature tells.
        let mut t = Transposed::ZEROED;
        assert_eq!(
            image::load(&img, &mut t, NonFinite::Reject),
            Err(Error::Image(ImageError::OtherShape))
        );
        assert_eq!(bits(&t), bits(&Transposed::ZEROED));
        let mut m = Momentum::<Small>::ZEROED;
        assert_eq!(
            image::load(&img, &mut m, NonFinite::Reject),
            Err(Error::Image(ImageError::OtherContent(1)))
        );
    }

    #[test]
    fn header_fields_are_checked_behind_a_valid_checksum() {
        let good = image_of(&filled::<Small>(5));
        let cases: [(usize, u8, ImageError); 3] = [
            (0, b'X', ImageError::NotAnImage),
            (4, 2, ImageError::UnsupportedVersion(2)),
            (24, 1, ImageError::ReservedBytes),
        ];
        for (at, byte, want) in cases {
            let mut bad = good.clone();
            bad[at] = byte;
            reseal(&mut bad);
            let mut dest = Small::ZEROED;
            assert_eq!(
                image::load(&bad, &mut dest, NonFinite::Reject),
                Err(Error::Image(want))
            );
            assert_eq!(bits(&dest), bits(&Small::ZEROED));
        }
    }

    #[test]
    fn non_finite_values_are_refused_unless_accepted() {
        let mut p = filled::<Small>(6);
        p.bias[1] = f32::NEG_INFINITY;
        let img = image_of(&p);
        let mut dest = Small::ZEROED;
        assert_eq!(
            image::load(&img, &mut dest, NonFinite::Reject),
            Err(Error::Image(ImageError::NonFinite { index: 7 }))
        );
        assert_eq!(bits(&dest), bits(&Small::ZEROED));
        image::load(&img, &mut dest, NonFinite::Accept).unwrap();
        assert_eq!(bits(&dest), bits(&p));
    }

    #[test]
    fn images_load_from_any_alignment_and_from_longer_buffers() {
        let p = filled::<Deep>(7);
        let img = image_of(&p);
        for offset in 0..8 {
            let mut buf = vec![0xFFu8; offset + img.len() + 100]; // erased flash after it
            buf[offset..offset + img.len()].copy_from_slice(&img);
            let mut dest = Deep::ZEROED;
            image::load(&buf[offset..], &mut dest, NonFinite::Reject).unwrap();
            assert_eq!(bits(&dest), bits(&p));
            let mut out = vec![0u8; offset + img.len()];
            image::save(&p, &mut out[offset..]).unwrap();
            assert_eq!(&out[offset..], &img[..]);
        }
    }

    #[test]
    fn optimiser_images_refuse_invalid_state() {
        let mut opt = Momentum::<Small>::ZEROED;
        opt.configure(Sgd::new(0.1).unwrap(), 0.9).unwrap();
        let mut img = image_of(&opt);
        img[32..36].copy_from_slice(&(-0.1f32).to_le_bytes()); // learning rate
        reseal(&mut img);
        let mut dest = Momentum::<Small>::ZEROED;
        assert!(matches!(
            image::load(&img, &mut dest, NonFinite::Reject),
            Err(Error::InvalidLearningRate(_))
        ));

        let mut adam = Adam::<Small>::ZEROED;
        adam.configure(1e-3, 0.9, 0.999, 1e-8, 0.0).unwrap();
        let mut img = image_of(&adam);
        let last = img.len() - 4; // the last second moment
        img[last..].copy_from_slice(&(-1.0f32).to_le_bytes());
        reseal(&mut img);
        let mut dest = Adam::<Small>::ZEROED;
        let values = 7 + 2 * Small::SCALARS;
        assert_eq!(
            image::load(&img, &mut dest, NonFinite::Reject),
            Err(Error::Image(ImageError::InvalidValue { index: values - 1 }))
        );
        let mut img = image_of(&adam);
        img[44..48].copy_from_slice(&0.0f32.to_le_bytes()); // ε = 0 with lr 1e-3
        reseal(&mut img);
        assert!(image::load(&img, &mut dest, NonFinite::Reject).is_err());
        assert_eq!(image_of(&dest), image_of(&Adam::<Small>::ZEROED));
    }

    /// Saving parameters and Adam state mid-training and resuming from the images gives the
    /// same parameters, bit for bit, as training without the interruption.
    #[test]
    fn training_resumed_from_images_matches_uninterrupted_training() {
        type N = Seq![Dense<5, 4, Relu>, Dense<4, 3, Sigmoid>, Dense<3, 2>];
        let net = N::default();
        let x: [[f32; 5]; 4] =
            core::array::from_fn(|s| core::array::from_fn(|i| (s * 5 + i) as f32 / 10.0 - 0.9));
        let y = [0usize, 1, 1, 0];
        let run = |p: &mut Deep, opt: &mut Adam<Deep>, steps: usize| {
            let (mut g, mut ws) = (Deep::ZEROED, Workspace::<N, 4>::ZEROED);
            for _ in 0..steps {
                gradguard::train_step(&net, p, &mut g, &mut ws, opt, &SoftmaxCrossEntropy, &x, &y)
                    .unwrap();
            }
        };
        let (mut p, mut opt) = (filled::<Deep>(8), Adam::<Deep>::ZEROED);
        opt.configure(1e-2, 0.9, 0.999, 1e-8, 1e-4).unwrap();
        let (mut p_full, mut opt_full) = (p, Adam::<Deep>::ZEROED);
        opt_full.configure(1e-2, 0.9, 0.999, 1e-8, 1e-4).unwrap();
        run(&mut p_full, &mut opt_full, 10);

        run(&mut p, &mut opt, 4);
        let (p_img, opt_img) = (image_of(&p), image_of(&opt));
        let (mut p2, mut opt2) = (Deep::ZEROED, Adam::<Deep>::ZEROED); // after a "reset"
        image::load(&p_img, &mut p2, NonFinite::Reject).unwrap();
        image::load(&opt_img, &mut opt2, NonFinite::Reject).unwrap();
        run(&mut p2, &mut opt2, 6);
        assert_eq!(bits(&p2), bits(&p_full));
        assert_ne!(
            bits(&p2),
            bits(&filled::<Deep>(8)),
            "training changed nothing"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any values, any NaN payload: save then load gives the same bits, and saving again
        /// gives the same image.
        #[test]
        fn round_trips_are_bit_exact(words in proptest::collection::vec(any::<u32>(), Deep::SCALARS)) {
            let mut p = Deep::ZEROED;
            let mut it = words.iter();
            for i in 0..Deep::TENSORS {
                for (v, &w) in p.tensor_mut(i).iter_mut().zip(&mut it) {
                    *v = f32::from_bits(w);
                }
            }
            let img = image_of(&p);
            let mut q = Deep::ZEROED;
            image::load(&img, &mut q, NonFinite::Accept).unwrap();
            prop_assert_eq!(bits(&q), bits(&p));
            prop_assert_eq!(image_of(&q), img.clone());
            let finite = words.iter().all(|&w| f32::from_bits(w).is_finite());
            prop_assert_eq!(image::verify::<Deep>(&img, NonFinite::Reject).is_ok(), finite);
        }

        /// Momentum and Adam state of two shapes, after a few steps of random gradients:
        /// save then load gives the same bits.
        #[test]
        fn optimiser_state_round_trips(seed in any::<u64>(), steps in 0usize..4) {
            fn check<P: Parameters + Copy>(seed: u64, steps: usize) -> Result<(), TestCaseError> {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                let (mut p, mut momentum, mut adam) = (P::ZEROED, Momentum::<P>::ZEROED, Adam::<P>::ZEROED);
                momentum.configure(Sgd::new(0.1).unwrap(), 0.9).unwrap();
                adam.configure(1e-3, 0.9, 0.999, 1e-8, 0.01).unwrap();
                for _ in 0..steps {
                    let mut g = P::ZEROED;
                    for i in 0..P::TENSORS {
                        fill(g.tensor_mut(i), 4, 4, Init::StandardNormal, &mut rng);
                    }
                    momentum.step(&mut p, &g);
                    adam.step(&mut p, &g);
                }
                let (mut m2, mut a2) = (Momentum::<P>::ZEROED, Adam::<P>::ZEROED);
                image::load(&image_of(&momentum), &mut m2, NonFinite::Reject).unwrap();
                image::load(&image_of(&adam), &mut a2, NonFinite::Reject).unwrap();
                prop_assert_eq!(image_of(&m2), image_of(&momentum));
                prop_assert_eq!(image_of(&a2), image_of(&adam));
                Ok(())
            }
            check::<Small>(seed, steps)?;
            check::<Deep>(seed, steps)?;
        }

        /// Arbitrary bytes never panic, and a refused image leaves the destination as it was.
        #[test]
        fn arbitrary_bytes_are_refused_without_a_trace(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let before = filled::<Small>(9);
            let mut dest = before;
            if image::load(&bytes, &mut dest, NonFinite::Accept).is_err() {
                prop_assert_eq!(bits(&dest), bits(&before));
            }
        }
    }
}

/// safetensors interchange with PyTorch (`--features safetensors`): a network trained in
/// PyTorch (`tools/pytorch-digits.py`) loads, computes PyTorch's logits, and saves back to
/// the same file; files that do not fit are refused with what was expected.
#[cfg(feature = "safetensors")]
mod interchange {
    use super::*;
    use gradguard::image::{self, NonFinite};
    use gradguard::interchange::{
        image_to_safetensors, load_safetensors, safetensors_to_image, save_safetensors,
        InterchangeError, Naming,
    };

    include!("data/pytorch_digits.rs");
    type Torch = Seq![Dense<64, 16, Relu>, Dense<16, 10>];
    type TorchParams = <Torch as Layer>::Params;
    const FILE: &[u8] = include_bytes!("data/pytorch-digits-64-16-10.safetensors");

    /// The logits match PyTorch's within the rounding error two f32 evaluations in different
    /// summation orders can have: for each logit, 2·(k+1)·u·Σ|terms| summed over both layers
    /// (k = 64 or 16 terms, u = 2^-24), computed in f64 from the same weights.
    #[test]
    fn pytorch_weights_give_pytorch_logits() {
        let mut p = TorchParams::ZEROED;
        load_safetensors(FILE, Naming::Sequential, &mut p).unwrap();
        let x: [[f32; 64]; 8] =
            core::array::from_fn(|i| gradguard::datasets::digits::features(i).unwrap());
        let mut cache = <Torch as Layer>::Cache::<8>::ZEROED;
        Torch::default().forward(&p, &x, &mut cache);
        let logits = Torch::output(&cache);
        let u = f64::from(f32::EPSILON) / 2.0;
        let (mut worst, mut largest) = (0.0f64, 0.0f64);
        for s in 0..8 {
            // |terms| of the hidden layer, then of the output layer.
            let hidden: Vec<f64> = (0..16)
                .map(|j| {
                    let z: f64 = (0..64)
                        .map(|i| f64::from(p.first.weights[j][i]) * f64::from(x[s][i]))
                        .sum::<f64>()
                        + f64::from(p.first.bias[j]);
                    z.max(0.0)
                })
                .collect();
            let hidden_abs: Vec<f64> = (0..16)
                .map(|j| {
                    (0..64)
                        .map(|i| (f64::from(p.first.weights[j][i]) * f64::from(x[s][i])).abs())
                        .sum::<f64>()
                        + f64::from(p.first.bias[j]).abs()
                })
                .collect();
            for k in 0..10 {
                let w2 = &p.second.weights[k];
                let terms: f64 = (0..16)
                    .map(|j| (f64::from(w2[j]) * hidden[j]).abs())
                    .sum::<f64>()
                    + f64::from(p.second.bias[k]).abs();
                let carried: f64 = (0..16)
                    .map(|j| f64::from(w2[j]).abs() * hidden_abs[j])
                    .sum();
                let bound = 2.0 * u * (17.0 * terms + 65.0 * carried);
                let diff = (f64::from(logits[s][k]) - f64::from(PYTORCH_LOGITS[s][k])).abs();
                assert!(
                    diff <= bound,
                    "record {s} logit {k}: {} vs PyTorch {} (bound {bound:e})",
                    logits[s][k],
                    PYTORCH_LOGITS[s][k]
                );
                worst = worst.max(diff / bound);
                largest = largest.max(diff);
            }
        }
        println!("largest difference from PyTorch's logits: {largest:e} ({worst:.3} of the bound)");
        assert_eq!(save_safetensors(&p, Naming::Sequential).unwrap(), FILE);
    }

    #[test]
    fn a_file_that_does_not_fit_is_refused_with_what_was_expected() {
        let mut p = <Seq![Dense<64, 32, Relu>, Dense<32, 10>] as Layer>::Params::ZEROED;
        let before = bits(&p);
        let e = load_safetensors(FILE, Naming::Sequential, &mut p).unwrap_err();
        let text = e.to_string();
        for line in [
            "0.weight: shape [16, 64], expected [32, 64]",
            "0.bias: shape [16], expected [32]",
            "2.weight: shape [10, 16], expected [10, 32]",
            "expected:",
            "  0.weight: f32 [32, 64]",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert_eq!(bits(&p), before);

        // Other names: every expected tensor missing, every one in the file unexpected.
        let mut q = TorchParams::ZEROED;
        let e = load_safetensors(FILE, Naming::Prefixes(&["fc1", "fc2"]), &mut q).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("fc1.weight: missing, expected f32 [16, 64]"),
            "{text}"
        );
        assert!(
            text.contains("2.bias: not a tensor of this network"),
            "{text}"
        );
        assert_eq!(
            load_safetensors(FILE, Naming::Prefixes(&["fc1"]), &mut q),
            Err(InterchangeError::NotEnoughNames {
                layers: 2,
                names: 1
            })
        );
        assert_eq!(bits(&q), bits(&TorchParams::ZEROED));
    }

    #[test]
    fn other_dtypes_are_refused() {
        use safetensors::tensor::{Dtype, TensorView};
        let w = vec![0u8; 2 * 3 * 8];
        let b = vec![0u8; 2 * 8];
        let views = vec![
            (
                "0.weight",
                TensorView::new(Dtype::F64, vec![2, 3], &w).unwrap(),
            ),
            ("0.bias", TensorView::new(Dtype::F64, vec![2], &b).unwrap()),
        ];
        let file = safetensors::serialize(views, None).unwrap();
        let mut p = <Dense<3, 2> as Layer>::Params::ZEROED;
        let text = load_safetensors(&file, Naming::Sequential, &mut p)
            .unwrap_err()
            .to_string();
        assert!(text.contains("0.weight: dtype F64, expected F32"), "{text}");
    }

    #[test]
    fn safetensors_and_images_convert_both_ways() {
        let (img, sizes) = safetensors_to_image(FILE, Naming::Sequential).unwrap();
        assert_eq!(sizes, [64, 16, 10]);
        let (mut from_image, mut from_file) = (TorchParams::ZEROED, TorchParams::ZEROED);
        image::load(&img, &mut from_image, NonFinite::Reject).unwrap();
        load_safetensors(FILE, Naming::Sequential, &mut from_file).unwrap();
        assert_eq!(bits(&from_image), bits(&from_file));
        assert_eq!(
            image_to_safetensors(&img, &sizes, Naming::Sequential).unwrap(),
            FILE
        );
        assert!(image_to_safetensors(&img, &[64, 10, 16], Naming::Sequential).is_err());
        let mut corrupt = img.clone();
        corrupt[40] ^= 4;
        assert!(image_to_safetensors(&corrupt, &sizes, Naming::Sequential).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut p = <Dense<3, 2> as Layer>::Params::ZEROED;
            if load_safetensors(&bytes, Naming::Sequential, &mut p).is_err() {
                prop_assert_eq!(bits(&p), bits(&<Dense<3, 2> as Layer>::Params::ZEROED));
            }
            let _ = safetensors_to_image(&bytes, Naming::Sequential);
        }
    }
}

/// `Trainer` is `train_step` with its arguments held: the same parameters bit for bit; its
/// epoch covers a data set the batch does not divide by wrapping the last batch around;
/// `evaluate` changes nothing; `predict` is the inference forward of one sample.
#[test]
fn the_trainer_is_train_step_with_its_arguments_held() {
    use gradguard::{train_step, Trainer};
    type Net = Seq![Dense<3, 5, Relu>, gradguard::BatchNorm<5, Sigmoid>, Dense<5, 2>];
    let net = Net::default();
    let mut p0 = <Net as Layer>::Params::ZEROED;
    net.init(
        &mut p0,
        Init::HeNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(5),
    );
    let samples: Vec<([f32; 3], usize)> = (0..10)
        .map(|i| {
            (
                [i as f32 / 10.0, (i % 3) as f32, 1.0 - i as f32 / 7.0],
                i % 2,
            )
        })
        .collect();
    let batch = |from: usize| -> ([[f32; 3]; 4], [usize; 4]) {
        let pick = |k: usize| samples[(from + k) % samples.len()];
        (
            core::array::from_fn(|k| pick(k).0),
            core::array::from_fn(|k| pick(k).1),
        )
    };
    // By hand: batches 0..4, 4..8 and 8, 9, 0, 1 (wrapped).
    let (mut p1, mut g1) = (p0, <Net as Layer>::Params::ZEROED);
    let mut ws1 = Workspace::<Net, 4>::ZEROED;
    let mut sgd1 = Sgd::new(0.1).unwrap();
    let mut by_hand = 0.0;
    for from in [0, 4, 8] {
        let (x, y) = batch(from);
        by_hand += train_step(
            &net,
            &mut p1,
            &mut g1,
            &mut ws1,
            &mut sgd1,
            &SoftmaxCrossEntropy,
            &x,
            &y,
        )
        .unwrap();
    }
    let (mut p2, mut g2) = (p0, <Net as Layer>::Params::ZEROED);
    let mut ws2 = Workspace::<Net, 4>::ZEROED;
    let mut sgd2 = Sgd::new(0.1).unwrap();
    let mut trainer = Trainer::new(
        &net,
        &mut p2,
        &mut g2,
        &mut ws2,
        &mut sgd2,
        &SoftmaxCrossEntropy,
    );
    let order: Vec<usize> = (0..samples.len()).collect();
    let mean = trainer.epoch(&order, |i| samples[i]).unwrap();
    assert_eq!(mean.to_bits(), (by_hand / 3.0f32).to_bits());
    assert_eq!(
        *trainer.params(),
        p1,
        "the same parameters, running statistics included"
    );
    // evaluate: the inference loss, nothing changed.
    let before = *trainer.params();
    let (x, y) = batch(2);
    let loss = trainer.evaluate(&x, &y).unwrap();
    assert!(loss.is_finite());
    assert_eq!(*trainer.params(), before);
    // predict: row 0 of an inference forward.
    let out = trainer.predict(&x[0]);
    let mut cache = <Net as Layer>::Cache::<1>::ZEROED;
    net.forward(&before, &[x[0]], &mut cache);
    assert_eq!(out, Net::output(&cache)[0]);
    // An empty epoch is no step.
    assert_eq!(trainer.epoch(&[], |i| samples[i]).unwrap(), 0.0);
    assert_eq!(*trainer.params(), before);
}
