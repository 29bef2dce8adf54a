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
//! Each test passes the backend explicitly (its token, [`Backend::isa`]); only the test of
//! `set_backend` itself changes the process-wide choice.

use gradguard::health::TensorStats;
use gradguard::kernels::{self, backend, set_backend, AnyIsa, Backend, Isa};
use gradguard::{Activation, Elementwise, Error};
use proptest::collection::vec;
use proptest::prelude::*;

#[path = "support/differential.rs"]
mod differential;
#[macro_use]
#[path = "support/activations.rs"]
mod registry;
use differential::{canonical, check_dense, stats_agree};

/// The backends this machine can run, other than the scalar reference.
fn simd_backends() -> Vec<Backend> {
    Backend::available()
        .filter(|&b| b != Backend::Scalar)
        .collect()
}

/// Runs `f` with the token of `b` (which this machine can run).
fn on<T>(b: Backend, f: impl FnOnce(AnyIsa) -> T) -> T {
    f(b.isa().expect("available"))
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
                    let r = check_dense::<$in, $out, $b>(&w, &b, &x, &dz, &simd_backends());
                    prop_assert!(r.is_ok(), "{}", r.unwrap_err());
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
    // ≥ 16 full vectors of inputs on every backend (AVX-512: 16 × 16 + 7): the forward's
    // long-loop path, with its register barrier, and an input tail.
    dense_263x17_batch_5: 263 x 17, batch 5, 16;
    // The batch-lanes forward (whole blocks of 16 samples on AVX-512, 8 elsewhere) and
    // the dot-product kernel for the samples left over; units past a block (33 = 2·16 + 1,
    // 20); inputs in chunks of 256 reloaded from the output (300 = 256 + 44, 520 = 2·256
    // + 8) with an input tail inside the transposed blocks.
    dense_17x33_batch_19: 17 x 33, batch 19, 32;
    dense_300x20_batch_17: 300 x 20, batch 17, 16;
    dense_520x9_batch_16: 520 x 9, batch 16, 8;
}

/// Forward, backward and derivative rows of one activation on one backend.
fn run_activation<A: Elementwise>(isa: AnyIsa, a: &A, z: &[f32], dy: &[f32]) -> [Vec<u32>; 3] {
    let n = z.len();
    let (mut out, mut dz, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    a.forward_on(isa, z, &mut out, n);
    Activation::backward_on(a, isa, z, &out, dy, &mut dz, n);
    isa.activation_derivative(a, z, &mut d);
    // The one-pass form gives the same bits as the two passes, on this backend.
    let (mut out2, mut d2) = (vec![0.0; n], vec![0.0; n]);
    isa.activation_forward_and_derivative(a, z, &mut out2, &mut d2);
    assert_eq!(
        canonical(&out2),
        canonical(&out),
        "{} value, one pass",
        A::NAME
    );
    assert_eq!(
        canonical(&d2),
        canonical(&d),
        "{} derivative, one pass",
        A::NAME
    );
    [canonical(&out), canonical(&dz), canonical(&d)]
}

fn check_activation<A: Elementwise>(a: A, z: &[f32], dy: &[f32]) -> Result<(), TestCaseError> {
    let reference = on(Backend::Scalar, |k| run_activation(k, &a, z, dy));
    // The scalar kernels are the scalar functions, element by element.
    let by_element: Vec<f32> = z.iter().map(|&v| a.value(v)).collect();
    prop_assert_eq!(&reference[0], &canonical(&by_element));
    let by_element: Vec<f32> = z.iter().map(|&v| a.derivative(v)).collect();
    prop_assert_eq!(&reference[2], &canonical(&by_element));
    for backend in simd_backends() {
        let got = on(backend, |k| run_activation(k, &a, z, dy));
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
        each_elementwise!(a => check_activation(a, &z, &dy)?);
    }

    #[test]
    fn softmax_and_losses_are_bit_identical_on_every_backend(
        (z, t) in (1usize..40).prop_flat_map(|n| (vec(any_f32(), n), vec(0.0f32..=1.0, n))),
        label in 0usize..45,
    ) {
        let run = |k: AnyIsa| {
            let n = z.len();
            let (mut a, mut g, mut g2, mut g3) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            kernels::softmax_row_on(k, &z, &mut a);
            let ce = kernels::softmax_cross_entropy_row_on(k, &z, label, &mut g, 0.5);
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
        let run = |k: AnyIsa| {
            let (mut w1, mut w2, mut w3) = (w.clone(), w.clone(), w.clone());
            let (mut velocity, mut m1, mut v1) = (m.clone(), m.clone(), v.clone());
            k.sgd_update(&mut w1, &g, lr, decay);
            k.sgd_momentum_update(&mut w2, &g, &mut velocity, lr, 0.9, decay);
            k.adam_update(&mut w3, &g, &mut m1, &mut v1, lr, 0.9, 0.999, 1e-8, decay, 0.1, 0.001);
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
        let run = |k: AnyIsa| {
            let mut s = TensorStats::EMPTY;
            s.add_slice_on(k, &values);
            s.add_slice_on(k, &values[values.len() / 2..]);
            s
        };
        let reference = on(Backend::Scalar, run);
        for backend in simd_backends() {
            let r = stats_agree(&on(backend, run), &reference, backend.name());
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }
}

#[test]
fn only_runnable_backends_can_be_selected() {
    // The one test here that changes the process-wide backend; the others pass theirs.
    for &b in Backend::ALL {
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
    assert_eq!(
        Backend::Neon.is_available(),
        cfg!(all(target_arch = "aarch64", target_feature = "neon"))
    );
    assert!(Backend::best().is_available());
}

/// The best backend detected is the one expected: the one the test harness was told
/// (`GRADGUARD_EXPECT_BEST`, set by `.ci/run` for the emulated CPUs), else the one std's own
/// feature detection implies (x86_64, aarch64). The dispatch neither misses a backend nor
/// picks one the CPU cannot run.
#[test]
fn detection_finds_the_expected_best_backend() {
    let expected = std::env::var("GRADGUARD_EXPECT_BEST")
        .ok()
        .or_else(best_by_std_detection);
    match expected {
        Some(expected) => assert_eq!(Backend::best().name(), expected),
        // wasm32 and the rest: the best is at least runnable.
        None => assert!(Backend::best().is_available()),
    }
}

/// The backend std's run-time feature detection (CPUID and XCR0 on x86_64) implies.
fn best_by_std_detection() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let name = if avx2 && is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if avx2 {
            "avx2"
        } else {
            "sse2"
        };
        return Some(name.into());
    }
    #[cfg(target_arch = "aarch64")]
    return Some("neon".into());
    #[allow(unreachable_code)]
    None
}
