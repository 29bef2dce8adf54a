//! The differential check of the dense kernels, shared by `tests/backends.rs` (proptest)
//! and the `dense` fuzz target: run everything on one backend, compare with the scalar
//! reference — dense_forward, and dX/dW on FMA backends, within
//! `kernels::matrix_error_bound`; db, dX/dW without FMA, every health count and extreme
//! exactly; health norms within the error of a lane-wise sum.
#![allow(dead_code)] // each includer uses a part

use gradguard::health::NoHealth;
use gradguard::health::{HealthConfig, HealthReport, LayerHealth, TensorStats};
use gradguard::kernels::{self, AnyIsa, Backend, Isa};
use gradguard::{BackwardContext, Dense, DenseCache, DenseParams, GradMode, Layer, Phase, Zeroed};

/// Fails the check with a message (a `prop_assert!` that also works outside proptest).
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($msg)+));
        }
    };
}

/// Bits with every NaN mapped to one pattern (Rust leaves NaN payloads unspecified).
pub fn canonical(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| if x.is_nan() { 0x7fc0_0000 } else { x.to_bits() })
        .collect()
}

pub fn array<const N: usize>(v: &[f32]) -> [f32; N] {
    core::array::from_fn(|k| v[k])
}

pub fn matrix<const C: usize, const R: usize>(v: &[f32]) -> [[f32; C]; R] {
    core::array::from_fn(|r| array::<C>(&v[r * C..]))
}

/// Everything the dense kernels produce on one backend.
#[derive(PartialEq, Debug)]
pub struct DenseResults {
    z: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<u32>,
    dw_accumulated: Vec<f32>,
    db_accumulated: Vec<u32>,
    health: LayerHealth,
}

pub fn run_dense<const IN: usize, const OUT: usize, const B: usize>(
    isa: AnyIsa,
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    dz: &[[f32; OUT]; B],
) -> DenseResults {
    let mut z = [[0.0; OUT]; B];
    isa.dense_forward(w, b, x, &mut z);
    let mut dx = [[7.0; IN]; B];
    isa.dense_backward_input(w, dz, &mut dx);
    let (mut dw, mut db) = ([[7.0; IN]; OUT], [7.0; OUT]);
    isa.dense_backward_params(dz, x, &mut dw, &mut db, GradMode::Overwrite);
    let (mut dw2, mut db2) = (dw, db);
    isa.dense_backward_params(dz, x, &mut dw2, &mut db2, GradMode::Accumulate);
    // The observed backward of an identity layer (dz = dy·1 = dy): the same values and the
    // health of the layer.
    let layer = Dense::<IN, OUT>::default();
    let params = DenseParams {
        weights: *w,
        bias: *b,
    };
    let mut cache = DenseCache::<OUT, B>::ZEROED;
    layer.forward_on(isa, Phase::Inference, &params, x, &mut cache);
    let mut grads = DenseParams::<IN, OUT>::ZEROED;
    let mut dx3 = [[0.0; IN]; B];
    let mut report = HealthReport::<1>::new(HealthConfig::DEFAULT);
    let mut context = BackwardContext {
        isa,
        mode: GradMode::Overwrite,
        observer: &mut report,
        layer: 0,
    };
    layer.backward_at(
        &params,
        x,
        &mut cache,
        dz,
        &mut grads,
        Some(&mut dx3),
        &mut context,
    );
    let health = report.layers_from_output()[0];
    // The untracked backward on the same cache: observing changes no bit. (Its dz is
    // dy·f'(z) = dy except where z is NaN.)
    let (mut plain_cache, mut plain) = (cache, DenseParams::<IN, OUT>::ZEROED);
    let mut plain_dx = [[0.0; IN]; B];
    let mut context = BackwardContext {
        isa,
        mode: GradMode::Overwrite,
        observer: &mut NoHealth,
        layer: 0,
    };
    layer.backward_at(
        &params,
        x,
        &mut plain_cache,
        dz,
        &mut plain,
        Some(&mut plain_dx),
        &mut context,
    );
    assert_eq!(
        canonical(plain.weights.as_flattened()),
        canonical(grads.weights.as_flattened())
    );
    assert_eq!(canonical(&plain.bias), canonical(&grads.bias));
    assert_eq!(
        canonical(plain_dx.as_flattened()),
        canonical(dx3.as_flattened())
    );
    assert_eq!(
        canonical(plain_cache.pre_activation_grad.as_flattened()),
        canonical(cache.pre_activation_grad.as_flattened())
    );
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
pub fn exact_health(h: &LayerHealth) -> Vec<u64> {
    let mut v = vec![
        h.pre_activation_structural_zeros,
        h.pre_activation_became_subnormal,
        h.pre_activation_became_zero,
        h.weight_products_became_subnormal,
        h.weight_products_became_zero,
        h.input_products_became_subnormal,
        h.input_products_became_zero,
        u64::from(h.dead_units),
        u64::from(h.saturated_units),
    ];
    for s in health_stats(h) {
        let c = s.counts;
        v.extend([c.zero, c.subnormal, c.normal, c.infinite, c.nan]);
        v.extend([
            u64::from(s.max_abs.to_bits()),
            u64::from(s.min_nonzero_abs.to_bits()),
        ]);
    }
    v
}

pub fn health_stats(h: &LayerHealth) -> [TensorStats; 3] {
    [h.pre_activation_grad, h.weight_grad, h.bias_grad]
}

/// Counts and extremes identical; norm and mean (sums in one partial sum per lane) within
/// the error bound of a sum of n positive terms, 2·γ(n) relative, plus one subnormal step.
pub fn stats_agree(got: &TensorStats, reference: &TensorStats, name: &str) -> Result<(), String> {
    ensure!(got.counts == reference.counts, "counts on {name}");
    ensure!(
        got.max_abs.to_bits() == reference.max_abs.to_bits(),
        "max on {name}"
    );
    let min = (got.min_nonzero_abs, reference.min_nonzero_abs);
    ensure!(min.0.to_bits() == min.1.to_bits(), "min on {name}");
    let n = got.len() as f64;
    let tolerance = 2.0 * (n + 2.0) * f64::from(f32::EPSILON) / 2.0 + 1e-12;
    // A result below 2^-126 is rounded to a multiple of 2^-149 when it becomes an f32, where
    // no relative bound holds: the two may differ by one such step more (a fuzzer-found case:
    // a mean |dW| of 3.09124e-40 against 3.09125e-40).
    let subnormal_step = f64::from(f32::from_bits(1));
    for (g, r) in [
        (got.l2_norm(), reference.l2_norm()),
        (got.mean_abs(), reference.mean_abs()),
    ] {
        let (g, r) = (f64::from(g), f64::from(r));
        let same = g == r || (g.is_nan() && r.is_nan());
        ensure!(
            same || (g - r).abs() <= tolerance * r.abs() + subnormal_step,
            "{g:e} vs {r:e} on {name}"
        );
    }
    Ok(())
}

/// `got` is within `matrix_error_bound` of `reference` for a sum of `terms` (products, as
/// f64) plus `extra`: NaN where a term is NaN, unchecked where a partial sum could overflow.
pub fn within_bound(
    what: &str,
    got: f32,
    reference: f32,
    terms: &[f64],
    extra: f64,
) -> Result<(), String> {
    if terms.iter().any(|t| t.is_nan()) || extra.is_nan() {
        ensure!(
            got.is_nan() && reference.is_nan(),
            "{what}: {got} vs {reference}"
        );
        return Ok(());
    }
    let sum_abs: f64 = terms.iter().map(|t| t.abs()).sum::<f64>() + extra.abs();
    if sum_abs < f64::from(f32::MAX) {
        let bound = kernels::matrix_error_bound(terms.len(), sum_abs);
        let diff = (f64::from(got) - f64::from(reference)).abs();
        ensure!(
            diff <= bound,
            "{what}: {got:e} vs {reference:e}, |diff| {diff:e} > {bound:e}"
        );
    }
    Ok(())
}

// Index loops mirror the formulas (dx[s][i] = Σ_o dz[s][o]·w[o][i], …).
#[allow(clippy::needless_range_loop)]
pub fn check_dense<const IN: usize, const OUT: usize, const B: usize>(
    wv: &[f32],
    bv: &[f32],
    xv: &[f32],
    dzv: &[f32],
    backends: &[Backend],
) -> Result<(), String> {
    let (w, b) = (matrix::<IN, OUT>(wv), array::<OUT>(bv));
    let (x, dz) = (matrix::<IN, B>(xv), matrix::<OUT, B>(dzv));
    // Each backend is passed explicitly: nothing process-wide changes.
    let run = |backend: Backend| {
        let isa = backend.isa().ok_or("the backend is not available")?;
        Ok::<_, &str>(run_dense(isa, &w, &b, &x, &dz))
    };
    let reference = run(Backend::Scalar).map_err(String::from)?;
    let product = |a: f32, b: f32| f64::from(a) * f64::from(b);
    for &backend in backends {
        let got = run(backend).map_err(String::from)?;
        let name = backend.name();
        ensure!(got.db == reference.db, "db on {name}");
        ensure!(
            got.db_accumulated == reference.db_accumulated,
            "db += on {name}"
        );
        // Underflow counts describe the products, not the sums: identical wherever the
        // layer's dz is (dz = dy except where z is NaN, and z's NaNs can differ only where
        // a partial sum overflows).
        let nan_mask = |z: &[f32]| z.iter().map(|v| v.is_nan()).collect::<Vec<_>>();
        let same_dz = nan_mask(&got.z) == nan_mask(&reference.z);
        if same_dz {
            ensure!(
                exact_health(&got.health)[..7] == exact_health(&reference.health)[..7],
                "underflow counts on {name}"
            );
        }
        let exact_backward = canonical(&got.dx) == canonical(&reference.dx)
            && canonical(&got.dw) == canonical(&reference.dw);
        if !backend.fuses_multiply_add() {
            ensure!(exact_backward, "dX/dW differ from the reference on {name}");
            let accumulated = (
                canonical(&got.dw_accumulated),
                canonical(&reference.dw_accumulated),
            );
            ensure!(accumulated.0 == accumulated.1, "dW += on {name}");
        }
        if exact_backward && same_dz {
            // The health counts are a function of the values.
            ensure!(
                exact_health(&got.health) == exact_health(&reference.health),
                "health counts on {name}: {:?} vs {:?}",
                exact_health(&got.health),
                exact_health(&reference.health)
            );
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
