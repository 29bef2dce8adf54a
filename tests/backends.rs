//! Every available SIMD backend against the scalar reference, on awkward shapes and
//! adversarial values (NaN, ±∞, ±0, subnormals, 1e38).
//!
//! * `dense_forward`, and dX/dW on backends that fuse multiply-adds: within
//!   `kernels::matrix_error_bound` wherever no partial sum can overflow; NaN wherever a term
//!   is NaN. dX/dW on SSE2 and simd128: bit-identical.
//! * Everything else (db, activations and derivatives, softmax, losses, optimiser updates,
//!   health statistics, and the health counts wherever the values agree): bit-identical,
//!   NaN payloads aside.
//!
//! The backend is a process-wide setting, so the tests take a lock while they switch it.

use std::sync::Mutex;

use gradguard::health::{LayerHealth, TensorStats};
use gradguard::kernels::{self, backend, set_backend, Backend};
use gradguard::{
    Activation, Elementwise, Elu, Error, GradMode, Identity, LeakyRelu, Relu, Sigmoid, Softsign,
    Tanh,
};
use proptest::collection::vec;
use proptest::prelude::*;

static LOCK: Mutex<()> = Mutex::new(());

/// The backends this machine can run, other than the scalar reference.
fn simd_backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| *b != Backend::Scalar && b.is_available())
        .collect()
}

/// Runs `f` with `b` active (and the lock held), then restores the previous backend.
fn on<T>(b: Backend, f: impl FnOnce() -> T) -> T {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = backend();
    set_backend(b).expect("available");
    let r = f();
    set_backend(before).expect("was available");
    r
}

/// Bits with every NaN mapped to one pattern (Rust leaves NaN payloads unspecified).
fn canonical(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| if x.is_nan() { 0x7fc0_0000 } else { x.to_bits() })
        .collect()
}

/// Mostly ordinary values, some adversarial ones.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        12 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(1e38f32),
        1 => Just(-1e38f32),
        1 => Just(1e-40f32),
        1 => Just(-1e-45f32),
        1 => -1e-20f32..1e-20,
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

/// `n` finite values (ordinary, tiny and zero) with up to three adversarial ones injected
/// at random places, so most dot products stay finite and the bound is really tested.
fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    let finite = prop_oneof![
        20 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => -1e-20f32..1e-20,
        1 => Just(1e-40f32),
    ];
    let special = prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e38f32),
        Just(-1e38f32),
        Just(-1e-45f32),
        any::<u32>().prop_map(f32::from_bits),
    ];
    (vec(finite, n), vec((any::<usize>(), special), 0..4)).prop_map(move |(mut v, inject)| {
        for (at, x) in inject {
            if n > 0 {
                v[at % n] = x;
            }
        }
        v
    })
}

/// Any f32 bit pattern, with weight on the ranges where the formulas switch branches.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<u32>().prop_map(f32::from_bits),
        -120.0f32..120.0,
        -1e-3f32..1e-3,
        -0.6f32..0.6,
        86.0f32..105.0,
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
    ]
}

fn array<const N: usize>(v: &[f32]) -> [f32; N] {
    core::array::from_fn(|k| v[k])
}

fn matrix<const C: usize, const R: usize>(v: &[f32]) -> [[f32; C]; R] {
    core::array::from_fn(|r| array::<C>(&v[r * C..]))
}

/// Everything the dense kernels produce on one backend.
#[derive(PartialEq, Debug)]
struct DenseResults {
    z: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<u32>,
    dw_accumulated: Vec<f32>,
    db_accumulated: Vec<u32>,
    health: LayerHealth,
}

fn run_dense<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    dz: &[[f32; OUT]; B],
) -> DenseResults {
    let mut z = [[0.0; OUT]; B];
    kernels::dense_forward(w, b, x, &mut z);
    let mut dx = [[7.0; IN]; B];
    kernels::dense_backward_input(w, dz, &mut dx);
    let (mut dw, mut db) = ([[7.0; IN]; OUT], [7.0; OUT]);
    kernels::dense_backward_params(dz, x, &mut dw, &mut db, GradMode::Overwrite);
    let (mut dw2, mut db2) = (dw, db);
    kernels::dense_backward_params(dz, x, &mut dw2, &mut db2, GradMode::Accumulate);
    // The tracked kernels: the same values and the health of the layer.
    let mut health = LayerHealth::EMPTY;
    let (mut dw3, mut db3, mut dx3) = ([[0.0; IN]; OUT], [0.0; OUT], [[0.0; IN]; B]);
    kernels::dense_backward_params_tracked::<true, IN, OUT, B>(
        dz,
        x,
        &mut dw3,
        &mut db3,
        GradMode::Overwrite,
        Some(&mut health),
    );
    kernels::dense_backward_input_tracked::<true, IN, OUT, B>(w, dz, &mut dx3, Some(&mut health));
    assert_eq!(canonical(dw3.as_flattened()), canonical(dw.as_flattened()));
    assert_eq!(canonical(dx3.as_flattened()), canonical(dx.as_flattened()));
    DenseResults {
        z: z.as_flattened().to_vec(),
        dx: dx.as_flattened().to_vec(),
        dw: dw.as_flattened().to_vec(),
        db: canonical(&db),
        dw_accumulated: dw2.as_flattened().to_vec(),
        db_accumulated: canonical(&db2),
        health,
    }
}

/// Every count and extreme of a layer's health (what must agree exactly across backends).
fn exact_health(h: &LayerHealth) -> Vec<u32> {
    let mut v = vec![
        h.pre_activation_structural_zeros,
        h.pre_activation_became_subnormal,
        h.pre_activation_became_zero,
        h.weight_products_became_subnormal,
        h.weight_products_became_zero,
        h.weight_sums_vanished,
        h.bias_sums_vanished,
        h.input_sums_vanished,
        u32::from(h.dead_units),
        u32::from(h.saturated_units),
    ];
    for s in health_stats(h) {
        let c = s.counts;
        v.extend([c.zero, c.subnormal, c.normal, c.infinite, c.nan]);
        v.extend([s.max_abs.to_bits(), s.min_nonzero_abs.to_bits()]);
    }
    v
}

fn health_stats(h: &LayerHealth) -> [TensorStats; 5] {
    [
        h.pre_activation_grad,
        h.weight_grad,
        h.bias_grad,
        h.input_grad,
        h.weights,
    ]
}

/// Counts and extremes identical; norm and mean (sums in one partial sum per lane) within
/// the error bound of a sum of n positive terms, 2·γ(n) relative.
fn stats_agree(
    got: &TensorStats,
    reference: &TensorStats,
    name: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.counts, reference.counts, "counts on {}", name);
    prop_assert_eq!(got.max_abs.to_bits(), reference.max_abs.to_bits());
    prop_assert_eq!(
        got.min_nonzero_abs.to_bits(),
        reference.min_nonzero_abs.to_bits()
    );
    let n = f64::from(got.len());
    let tolerance = 2.0 * (n + 2.0) * f64::from(f32::EPSILON) / 2.0 + 1e-12;
    for (g, r) in [
        (got.l2_norm(), reference.l2_norm()),
        (got.mean_abs(), reference.mean_abs()),
    ] {
        let (g, r) = (f64::from(g), f64::from(r));
        let same = g == r || (g.is_nan() && r.is_nan());
        prop_assert!(
            same || (g - r).abs() <= tolerance * r.abs(),
            "{g:e} vs {r:e} on {name}"
        );
    }
    Ok(())
}

/// `got` is within `matrix_error_bound` of `reference` for a sum of `terms` (products, as
/// f64) plus `extra`: NaN where a term is NaN, unchecked where a partial sum could overflow.
fn within_bound(
    what: &str,
    got: f32,
    reference: f32,
    terms: &[f64],
    extra: f64,
) -> Result<(), TestCaseError> {
    if terms.iter().any(|t| t.is_nan()) || extra.is_nan() {
        prop_assert!(
            got.is_nan() && reference.is_nan(),
            "{what}: {got} vs {reference}"
        );
        return Ok(());
    }
    let sum_abs: f64 = terms.iter().map(|t| t.abs()).sum::<f64>() + extra.abs();
    if sum_abs < f64::from(f32::MAX) {
        let bound = kernels::matrix_error_bound(terms.len(), sum_abs);
        let diff = (f64::from(got) - f64::from(reference)).abs();
        prop_assert!(
            diff <= bound,
            "{what}: {got:e} vs {reference:e}, |diff| {diff:e} > {bound:e}"
        );
    }
    Ok(())
}

// Index loops mirror the formulas (dx[s][i] = Σ_o dz[s][o]·w[o][i], …).
#[allow(clippy::needless_range_loop)]
fn check_dense<const IN: usize, const OUT: usize, const B: usize>(
    wv: &[f32],
    bv: &[f32],
    xv: &[f32],
    dzv: &[f32],
) -> Result<(), TestCaseError> {
    let (w, b) = (matrix::<IN, OUT>(wv), array::<OUT>(bv));
    let (x, dz) = (matrix::<IN, B>(xv), matrix::<OUT, B>(dzv));
    let reference = on(Backend::Scalar, || run_dense(&w, &b, &x, &dz));
    let product = |a: f32, b: f32| f64::from(a) * f64::from(b);
    for backend in simd_backends() {
        let got = on(backend, || run_dense(&w, &b, &x, &dz));
        let name = backend.name();
        prop_assert_eq!(&got.db, &reference.db, "db on {}", name);
        prop_assert_eq!(
            &got.db_accumulated,
            &reference.db_accumulated,
            "db += on {}",
            name
        );
        let exact_backward = canonical(&got.dx) == canonical(&reference.dx)
            && canonical(&got.dw) == canonical(&reference.dw);
        if !backend.fuses_multiply_add() {
            prop_assert!(
                exact_backward,
                "dX/dW differ from the reference on {}",
                name
            );
            prop_assert_eq!(
                canonical(&got.dw_accumulated),
                canonical(&reference.dw_accumulated)
            );
        }
        if exact_backward {
            // The health counts are a function of the values.
            prop_assert_eq!(exact_health(&got.health), exact_health(&reference.health));
            for (g, r) in health_stats(&got.health)
                .iter()
                .zip(health_stats(&reference.health))
            {
                stats_agree(g, &r, name)?;
            }
        }
        for s in 0..B {
            for o in 0..OUT {
                let terms: Vec<f64> = (0..IN).map(|i| product(w[o][i], x[s][i])).collect();
                let k = s * OUT + o;
                let what = format!("z[{s}][{o}] on {name}");
                within_bound(&what, got.z[k], reference.z[k], &terms, f64::from(b[o]))?;
            }
            for i in 0..IN {
                let terms: Vec<f64> = (0..OUT).map(|o| product(dz[s][o], w[o][i])).collect();
                let k = s * IN + i;
                let what = format!("dx[{s}][{i}] on {name}");
                within_bound(&what, got.dx[k], reference.dx[k], &terms, 0.0)?;
            }
        }
        for o in 0..OUT {
            for i in 0..IN {
                let terms: Vec<f64> = (0..B).map(|s| product(dz[s][o], x[s][i])).collect();
                let k = o * IN + i;
                let what = format!("dw[{o}][{i}] on {name}");
                within_bound(&what, got.dw[k], reference.dw[k], &terms, 0.0)?;
                // Accumulated: the same terms twice.
                let twice: Vec<f64> = terms.iter().chain(terms.iter()).copied().collect();
                let what = format!("dw[{o}][{i}] += on {name}");
                let (g, r) = (got.dw_accumulated[k], reference.dw_accumulated[k]);
                within_bound(&what, g, r, &twice, 0.0)?;
            }
        }
    }
    Ok(())
}

macro_rules! dense_shapes {
    ($($name:ident: $in:literal x $out:literal, batch $b:literal, $cases:literal;)*) => {
        $(
            proptest! {
                #![proptest_config(ProptestConfig::with_cases($cases))]
                #[test]
                fn $name(
                    w in values($in * $out),
                    b in values($out),
                    x in values($in * $b),
                    dz in values($out * $b),
                ) {
                    check_dense::<$in, $out, $b>(&w, &b, &x, &dz)?;
                }
            }
        )*
    };
}

dense_shapes! {
    dense_1x1_batch_1: 1 x 1, batch 1, 256;
    dense_3x7_batch_5: 3 x 7, batch 5, 256;
    dense_7x3_batch_1: 7 x 3, batch 1, 256;
    dense_15x17_batch_4: 15 x 17, batch 4, 128;
    dense_17x15_batch_3: 17 x 15, batch 3, 128;
    dense_33x65_batch_7: 33 x 65, batch 7, 64;
    dense_65x33_batch_9: 65 x 33, batch 9, 64;
    dense_64x10_batch_32: 64 x 10, batch 32, 32;
    dense_128x16_batch_1: 128 x 16, batch 1, 64;
}

/// Forward, backward and derivative rows of one activation on one backend.
fn run_activation<A: Elementwise>(a: &A, z: &[f32], dy: &[f32]) -> [Vec<u32>; 3] {
    let n = z.len();
    let (mut out, mut dz, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    a.forward(z, &mut out);
    Activation::backward(a, z, &out, dy, &mut dz);
    kernels::activation_derivative(a, z, &mut d);
    [canonical(&out), canonical(&dz), canonical(&d)]
}

fn check_activation<A: Elementwise>(a: A, z: &[f32], dy: &[f32]) -> Result<(), TestCaseError> {
    let reference = on(Backend::Scalar, || run_activation(&a, z, dy));
    // The scalar kernels are the scalar functions, element by element.
    let by_element: Vec<f32> = z.iter().map(|&v| a.value(v)).collect();
    prop_assert_eq!(&reference[0], &canonical(&by_element));
    let by_element: Vec<f32> = z.iter().map(|&v| a.derivative(v)).collect();
    prop_assert_eq!(&reference[2], &canonical(&by_element));
    for backend in simd_backends() {
        let got = on(backend, || run_activation(&a, z, dy));
        prop_assert_eq!(&got, &reference, "{} on {}", A::NAME, backend.name());
    }
    Ok(())
}

fn row() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (0usize..70).prop_flat_map(|n| (vec(any_f32(), n), vec(value(), n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn activations_are_bit_identical_on_every_backend((z, dy) in row()) {
        check_activation(Identity, &z, &dy)?;
        check_activation(Sigmoid, &z, &dy)?;
        check_activation(Tanh, &z, &dy)?;
        check_activation(Relu, &z, &dy)?;
        check_activation(LeakyRelu::new(0.2), &z, &dy)?;
        check_activation(Elu::new(1.0), &z, &dy)?;
        check_activation(Softsign, &z, &dy)?;
    }

    #[test]
    fn softmax_and_losses_are_bit_identical_on_every_backend(
        (z, t) in (1usize..40).prop_flat_map(|n| (vec(any_f32(), n), vec(0.0f32..=1.0, n))),
        label in 0usize..45,
    ) {
        let run = || {
            let n = z.len();
            let (mut a, mut g, mut g2, mut g3) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            kernels::softmax_row(&z, &mut a);
            let ce = kernels::softmax_cross_entropy_row(&z, label, &mut g, 0.5);
            let bce = kernels::binary_cross_entropy_with_logits_row(&z, &t, &mut g2, 0.5);
            kernels::softmax_backward_row(&a, &t, &mut g3);
            (canonical(&a), canonical(&g), canonical(&g2), canonical(&g3), canonical(&[ce, bce]))
        };
        let reference = on(Backend::Scalar, run);
        for backend in simd_backends() {
            prop_assert_eq!(on(backend, run), reference.clone(), "on {}", backend.name());
        }
    }

    #[test]
    fn optimiser_updates_are_bit_identical_on_every_backend(
        (w, g, m, v) in (0usize..70).prop_flat_map(|n| (
            vec(value(), n), vec(value(), n), vec(value(), n), vec(0.0f32..10.0, n))),
        lr in prop_oneof![Just(0.1f32), 1e-4f32..1.0, Just(f32::NAN)],
        decay in prop_oneof![Just(0.0f32), 0.0f32..0.1],
    ) {
        let run = || {
            let (mut w1, mut w2, mut w3) = (w.clone(), w.clone(), w.clone());
            let (mut velocity, mut m1, mut v1) = (m.clone(), m.clone(), v.clone());
            kernels::sgd_update(&mut w1, &g, lr, decay);
            kernels::sgd_momentum_update(&mut w2, &g, &mut velocity, lr, 0.9, decay);
            kernels::adam_update(&mut w3, &g, &mut m1, &mut v1, lr, 0.9, 0.999, 1e-8, decay, 0.1, 0.001);
            [w1, w2, velocity, w3, m1, v1].map(|x| canonical(&x))
        };
        let reference = on(Backend::Scalar, run);
        for backend in simd_backends() {
            prop_assert_eq!(on(backend, run), reference.clone(), "on {}", backend.name());
        }
    }

    #[test]
    fn health_statistics_agree_on_every_backend(
        values in (0usize..200).prop_flat_map(|n| vec(value(), n)),
    ) {
        let run = || {
            let mut s = TensorStats::EMPTY;
            s.add_slice(&values);
            s.add_slice(&values[values.len() / 2..]);
            s
        };
        let reference = on(Backend::Scalar, run);
        for backend in simd_backends() {
            stats_agree(&on(backend, run), &reference, backend.name())?;
        }
    }
}

#[test]
fn only_runnable_backends_can_be_selected() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for b in Backend::ALL {
        let before = backend();
        match set_backend(b) {
            Ok(()) => assert!(b.is_available() && backend() == b),
            Err(e) => {
                assert_eq!(e, Error::BackendUnavailable(b));
                assert!(!b.is_available());
                assert_eq!(backend(), before);
            }
        }
        set_backend(before).unwrap();
    }
    assert!(Backend::Scalar.is_available());
    assert_eq!(Backend::Sse2.is_available(), cfg!(target_arch = "x86_64"));
    assert_eq!(Backend::Neon.is_available(), cfg!(target_arch = "aarch64"));
    assert!(Backend::best().is_available());
}

/// The CPU features the test harness was told to expect (`GRADGUARD_EXPECT_BEST`, set by
/// `.ci/run` for the emulated CPUs) are the ones detected: the dispatch neither misses a
/// backend nor picks one the CPU cannot run.
#[test]
fn detection_finds_the_expected_best_backend() {
    if let Ok(expected) = std::env::var("GRADGUARD_EXPECT_BEST") {
        assert_eq!(Backend::best().name(), expected);
    }
}
