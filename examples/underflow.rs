//! Floating-point underflow itself: the textbook σ' = s·(1 − s) returns a false zero at
//! x ≥ 16.64 while gradguard's derivative stays a normal number; and a deep chain of
//! sigmoid units whose gradient passes from normal to subnormal to zero, with the health
//! report at each depth.
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
        &[[1.0]],
        &mut grads,
        None,
        GradMode::Overwrite,
        &mut *report,
    );
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
}
