//! BatchNorm on arbitrary inputs, parameters, running statistics and gradients (any bit
//! patterns: NaN, ±∞, subnormals, huge values), differential: training and inference
//! forward, backward (overwrite and accumulate) and the observed backward on every SIMD
//! backend this machine has give the scalar backend's bits (NaN payloads aside), the
//! observed backward the untracked one's, and nothing panics. Run:
//! `cargo +nightly fuzz run batch_norm`.
#![no_main]

use gradguard::health::{HealthConfig, HealthReport, NoHealth};
use gradguard::kernels::{AnyIsa, Backend};
use gradguard::{BackwardContext, BatchNorm, GradMode, Layer, Phase, Sigmoid, Zeroed};
use libfuzzer_sys::fuzz_target;

/// `n` f32 values from the input's bytes, as arbitrary bit patterns (cycled if short).
fn values(data: &[u8], n: usize, offset: usize) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let at = (offset + 4 * k) % data.len().max(1);
            let b = |j: usize| data.get((at + j) % data.len().max(1)).copied().unwrap_or(0);
            f32::from_bits(u32::from_le_bytes([b(0), b(1), b(2), b(3)]))
        })
        .collect()
}

/// Bits with every NaN as one pattern.
fn canonical(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| if x.is_nan() { 0x7fc0_0000 } else { x.to_bits() })
        .collect()
}

/// Everything one backend computes, as canonical bits.
fn run<const N: usize, const B: usize>(isa: AnyIsa, data: &[u8], observe: bool) -> Vec<u32> {
    let bn = BatchNorm::<N, Sigmoid>::default();
    let mut p = <BatchNorm<N, Sigmoid> as Layer>::Params::ZEROED;
    let fill = |dst: &mut [f32], offset| dst.copy_from_slice(&values(data, dst.len(), offset));
    fill(&mut p.scale, 0);
    fill(&mut p.shift, 4 * N);
    fill(&mut p.running_mean, 8 * N);
    fill(&mut p.running_variance, 12 * N);
    let mut x = [[0.0f32; N]; B];
    fill(x.as_flattened_mut(), 16 * N);
    let mut dy = [[0.0f32; N]; B];
    fill(dy.as_flattened_mut(), 16 * N + 4 * N * B);
    let mut out = Vec::new();
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
        out.extend(canonical(cache.output.as_flattened()));
        for mode in [GradMode::Overwrite, GradMode::Accumulate] {
            if observe {
                let mut report = HealthReport::<1>::new(HealthConfig::DEFAULT);
                let mut context = BackwardContext {
                    isa,
                    mode,
                    observer: &mut report,
                    layer: 0,
                };
                let dx = Some(&mut dx);
                bn.backward_at(&p, &x, &mut cache, &dy, &mut grads, dx, &mut context);
                assert_eq!(report.layers_from_output().len(), 1);
            } else {
                let mut context = BackwardContext {
                    isa,
                    mode,
                    observer: &mut NoHealth,
                    layer: 0,
                };
                let dx = Some(&mut dx);
                bn.backward_at(&p, &x, &mut cache, &dy, &mut grads, dx, &mut context);
            }
            out.extend(canonical(dx.as_flattened()));
            out.extend(canonical(&grads.scale));
            out.extend(canonical(&grads.shift));
        }
        let mut q = p;
        bn.update_running_statistics(&mut q, &mut cache);
        out.extend(canonical(&q.running_mean));
        out.extend(canonical(&q.running_variance));
    }
    out
}

fn check<const N: usize, const B: usize>(data: &[u8]) {
    // Each backend passed explicitly, as its token.
    let on = |backend: Backend, observe: bool| {
        run::<N, B>(backend.isa().expect("available"), data, observe)
    };
    let reference = on(Backend::Scalar, false);
    assert_eq!(
        on(Backend::Scalar, true),
        reference,
        "observed vs untracked"
    );
    for b in Backend::available().filter(|&b| b != Backend::Scalar) {
        assert_eq!(on(b, false), reference, "{b:?}");
        assert_eq!(on(b, true), reference, "{b:?}, observed");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 4 {
        return;
    }
    match shape % 6 {
        0 => check::<1, 1>(rest),
        1 => check::<3, 2>(rest),
        2 => check::<7, 5>(rest),
        3 => check::<16, 3>(rest),
        4 => check::<19, 8>(rest),
        _ => check::<33, 33>(rest),
    }
});
