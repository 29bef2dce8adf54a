//! Softmax, the losses and the optimisers on arbitrary logits, labels, targets and learning
//! rates: an out-of-range label or target and a negative, zero, infinite or NaN learning
//! rate are error values, never panics; valid inputs give finite, correctly signed results
//! whenever the logits are finite. Run: `cargo +nightly fuzz run losses`.
#![no_main]

use gradguard::kernels;
use gradguard::{
    BinaryCrossEntropyWithLogits, DenseParams, Error, Loss, MeanSquaredError, Optimizer, Sgd,
    SoftmaxCrossEntropy, Zeroed,
};
use libfuzzer_sys::fuzz_target;

const N: usize = 7;
const B: usize = 3;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 * N * B + 8 {
        return;
    }
    let f = |k: usize| {
        let c = &data[4 * k..4 * k + 4];
        f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    };
    let z: [[f32; N]; B] = core::array::from_fn(|s| core::array::from_fn(|k| f(s * N + k)));
    let tail = &data[4 * N * B..];
    let labels: [usize; B] = core::array::from_fn(|s| usize::from(tail[s]) % (N + 2));
    let lr = f32::from_bits(u32::from_le_bytes([tail[3], tail[4], tail[5], tail[6]]));
    let finite = z.iter().flatten().all(|v| v.is_finite());

    // Softmax rows: in [0, 1] and summing to 1 for finite logits.
    for row in &z {
        let mut a = [0.0f32; N];
        kernels::softmax_row(row, &mut a);
        if row.iter().all(|v| v.is_finite()) {
            assert!(a.iter().all(|&p| (0.0..=1.0).contains(&p)), "{a:?}");
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{a:?}");
        }
    }

    // Softmax cross-entropy: labels ≥ N are errors.
    let mut g = [[0.0f32; N]; B];
    match SoftmaxCrossEntropy.loss_and_gradient(&z, &labels, &mut g) {
        Ok(loss) => {
            assert!(labels.iter().all(|&l| l < N));
            if finite {
                // ln Σ e^(z−m) ≥ 0 and m − z_label ≥ 0 (∞ when the difference overflows).
                assert!(loss >= 0.0, "loss {loss}");
                for row in &g {
                    assert!(row.iter().sum::<f32>().abs() < 1e-5, "{row:?}");
                }
            }
        }
        Err(e) => {
            assert!(labels.iter().any(|&l| l >= N));
            assert!(matches!(e, Error::LabelOutOfRange { .. }));
        }
    }

    // Binary cross-entropy with logits: targets outside [0, 1] (or NaN) are errors.
    let targets: [[f32; N]; B] =
        core::array::from_fn(|s| core::array::from_fn(|k| f((s * N + k + 1) % (N * B))));
    let valid = targets.iter().flatten().all(|t| (0.0..=1.0).contains(t));
    match BinaryCrossEntropyWithLogits.loss_and_gradient(&z, &targets, &mut g) {
        Ok(loss) => {
            assert!(valid);
            if finite {
                // Every term max(z, 0) − z·t + ln(1 + e^−|z|) is ≥ 0 for t ∈ [0, 1].
                assert!(loss >= 0.0, "loss {loss}");
            }
        }
        Err(e) => assert!(!valid && matches!(e, Error::TargetOutOfRange(_))),
    }
    let _ = MeanSquaredError.loss_and_gradient(&z, &z, &mut g);

    // Learning rates: only finite positive ones build an optimiser.
    match Sgd::new(lr) {
        Ok(mut sgd) => {
            assert!(lr.is_finite() && lr > 0.0);
            let mut params = DenseParams::<N, B>::ZEROED;
            let grads = params;
            Optimizer::<DenseParams<N, B>>::step(&mut sgd, &mut params, &grads);
            assert_eq!(params, DenseParams::<N, B>::ZEROED); // zero gradient, zero step
        }
        Err(e) => {
            assert!(!(lr.is_finite() && lr > 0.0));
            assert!(matches!(e, Error::InvalidLearningRate(_)));
        }
    }
});
