//! Floating-point underflow itself: the textbook σ' = s·(1 − s) returns a false zero at
//! x ≥ 16.64 while gradguard's derivative stays a normal number; and a deep chain of
//! sigmoid units whose gradient passes from normal to subnormal to zero, with the health
//! report at each depth; and what a power-of-two loss scale does to that chain (it moves
//! the depth where the gradient underflows, exactly, and leaves the vanishing as it is).
//!
//! ```text
//! cargo run --release --example underflow
//! ```

use gradguard::health::{classify, FloatClass, HealthConfig, HealthReport};
use gradguard::kernels::subnormal_mode;
use gradguard::{math, Chain, Dense, GradMode, Layer, Parameters, Seq, Sigmoid, Zeroed};

type Unit = Dense<1, 1, Sigmoid>;
type C2 = Seq![Unit, Unit];
type C4 = Chain<C2, C2>;
type C8 = Chain<C4, C4>;
type C16 = Chain<C8, C8>;
type C32 = Chain<C16, C16>;
type C64 = Chain<C32, C32>;
type C128 = Chain<C64, C64>;

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: underflow  (shows false zeros of the textbook derivatives and underflow in a 128-unit sigmoid chain)");
        return;
    }
    println!(
        "This CPU: {:?} (read from the FPU control register, never written)\n",
        subnormal_mode()
    );

    println!(
        "1. σ'(x) three ways: textbook s·(1−s) with s = σ(x), gradguard's fast form, f64 reference"
    );
    println!(
        "{:>8}  {:>14} {:>14} {:>14}  class of gradguard's",
        "x", "s·(1−s)", "gradguard", "reference"
    );
    for x in [
        1.0f32, 10.0, 16.0, 16.63, 16.64, 17.0, 20.0, 40.0, 87.0, 88.0, 100.0, 103.0, 104.0,
    ] {
        let textbook = math::sigmoid_derivative_from_output(math::sigmoid(x));
        let ours = math::sigmoid_derivative(x);
        let reference = math::sigmoid_derivative_reference(x);
        let note = if textbook == 0.0 && ours != 0.0 {
            "  <- textbook false zero"
        } else {
            ""
        };
        println!(
            "{x:>8}  {textbook:>14.6e} {ours:>14.6e} {reference:>14.6e}  {:?}{note}",
            classify(ours)
        );
    }

    println!("\n2. A chain of 128 sigmoid units (w = 1, bias 0, input 0), backward from dL/dy = 1");
    let report = chain_report(1.0);
    println!(
        "{:>6} {:>14} {:>10}  {:>8} {:>8} {:>10}  structural zeros",
        "depth", "dz", "class", "subnorm", "to zero", "underflow"
    );
    let mut previous = None;
    for (depth, layer) in report.layers_from_output().iter().enumerate() {
        let dz = layer.pre_activation_grad.max_abs;
        let class = classify(dz);
        // Print every tenth depth and every depth where the class changes.
        if depth % 10 == 0
            || previous != Some(class)
            || depth + 1 == report.layers_from_output().len()
        {
            println!(
                "{:>6} {:>14.6e} {:>10}  {:>8} {:>8} {:>10}  {}",
                depth + 1,
                dz,
                format!("{class:?}"),
                layer.pre_activation_became_subnormal,
                layer.pre_activation_became_zero,
                layer.underflow_count(),
                layer.pre_activation_structural_zeros
            );
        }
        previous = Some(class);
    }
    let first_zero = report
        .layers_from_output()
        .iter()
        .position(|l| classify(l.pre_activation_grad.max_abs) == FloatClass::Zero);
    println!("flags: {:?}", report.flags());
    if let Some(depth) = first_zero {
        println!(
            "The gradient is exactly 0 from depth {} on: every layer below learns nothing, and \
             without the report nothing would say so.",
            depth + 1
        );
    }
    loss_scale(&report);
}

/// The health report of the 128-unit chain's backward pass from dL/dy = `scale`.
fn chain_report(scale: f32) -> Box<HealthReport<128>> {
    let net = C128::default();
    let mut params = Box::new(<C128 as Layer>::Params::ZEROED);
    for i in (0..<<C128 as Layer>::Params as Parameters>::TENSORS).step_by(2) {
        params.tensor_mut(i)[0] = 1.0;
    }
    let x = [[0.0]];
    let mut cache = Box::new(<C128 as Layer>::Cache::<1>::ZEROED);
    net.forward(&params, &x, &mut cache);
    let mut grads = Box::new(<C128 as Layer>::Params::ZEROED);
    let mut report = Box::new(HealthReport::<128>::new(HealthConfig::DEFAULT));
    net.backward_observed(
        &params,
        &x,
        &mut cache,
        &[[scale]],
        &mut grads,
        None,
        GradMode::Overwrite,
        &mut *report,
    );
    report
}

/// dz per depth (output first).
fn signal(report: &HealthReport<128>) -> Vec<f32> {
    let layers = report.layers_from_output().iter();
    layers.map(|l| l.pre_activation_grad.max_abs).collect()
}

/// The first depth (from 1) whose dz is of `class`, or "-".
fn first_depth(dz: &[f32], class: FloatClass) -> String {
    dz.iter()
        .position(|&v| classify(v) == class)
        .map_or("-".into(), |d| (d + 1).to_string())
}

/// Section 3: a loss scale 2^k multiplies every dz by 2^k exactly (a power of two changes
/// only the exponent) until something overflows; it moves the depths where the gradient
/// becomes subnormal and zero by k / log2(1/f) layers for a per-layer factor f, and leaves
/// the ratio between layers (the vanishing) exactly as it was.
fn loss_scale(unscaled: &HealthReport<128>) {
    let base = signal(unscaled);
    // The chain's per-layer factor σ'(z*) · w at its fixed point, from the normal part.
    let normal: Vec<f32> = base
        .iter()
        .copied()
        .take_while(|&v| classify(v) == FloatClass::Normal)
        .collect();
    let factor = match (normal.get(20), normal.get(40)) {
        (Some(&a), Some(&b)) => (b / a).powf(1.0 / 20.0),
        _ => f32::NAN,
    };
    println!(
        "\n3. The same chain with a power-of-two loss scale (dL/dy = 2^k): per-layer factor \
         {factor:.4} = 2^{:.3}",
        factor.log2()
    );
    println!(
        "{:>4} {:>16} {:>12}  {:>30}",
        "k", "first subnormal", "first zero", "dz·2^-k equals the unscaled dz"
    );
    for k in [0, 16, 32, 64, 96, 127] {
        let scale = f32::from_bits(((127 + k) as u32) << 23);
        let dz = signal(&chain_report(scale));
        // Where the unscaled dz is normal and the scaled one finite, unscaling gives it back
        // bit for bit.
        let exact = base
            .iter()
            .zip(&dz)
            .filter(|(b, s)| classify(**b) == FloatClass::Normal && s.is_finite())
            .all(|(b, s)| (s / scale).to_bits() == b.to_bits());
        println!(
            "{k:>4} {:>16} {:>12}  {:>30}",
            first_depth(&dz, FloatClass::Subnormal),
            first_depth(&dz, FloatClass::Zero),
            if exact { "bit for bit" } else { "NO" }
        );
    }
    println!(
        "A scale of 2^k buys about k·{:.2} layers before the gradient underflows, at no cost in \
         accuracy; the ratio between layers, and so the Vanishing flag, is the same (each \
         layer still multiplies the gradient by {factor:.3}). Only a remedy that changes that \
         factor (initialisation, batch norm, activation) cures the vanishing itself.",
        -1.0 / factor.log2()
    );
}
