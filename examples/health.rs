//! Gradient health reports: a 10-layer sigmoid net (Xavier init) against a 10-layer ReLU
//! net (He init) on one batch of digits. (`examples/underflow.rs` shows a gradient
//! underflowing in a deep chain.)
//!
//! ```text
//! cargo run --release --example health
//! ```

use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::{Dense, Layer, Relu, Seq, Sigmoid, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type Sig = Dense<32, 32, Sigmoid>;
type DeepSigmoid =
    Seq![Dense<64, 32, Sigmoid>, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Dense<32, 10>];
type Rl = Dense<32, 32, Relu>;
type DeepRelu = Seq![Dense<64, 32, Relu>, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Dense<32, 10>];

/// Health of the first backward pass of `L` on the first 32 training digits.
fn first_batch<L>(init: Init) -> HealthReport<10>
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]> + Default,
{
    let net = L::default();
    let mut params = Box::new(L::Params::ZEROED);
    net.init(&mut params, init, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    let mut grads = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, 32>::ZEROED);
    let mut report = HealthReport::<10>::new(HealthConfig::DEFAULT);
    if let Err(e) = digits::gradient_health(
        &net,
        &params,
        &mut grads,
        &mut workspace,
        &digits::TRAIN,
        &mut report,
    ) {
        eprintln!("{e}");
    }
    report
}

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: health  (prints the gradient health of a 10-layer sigmoid and a 10-layer ReLU net on the digits)");
        return;
    }
    println!("== 10-layer sigmoid, Xavier init: the classic vanishing gradient");
    println!("{}", first_batch::<DeepSigmoid>(Init::XavierNormal));
    println!("== 10-layer ReLU, He init");
    println!("{}", first_batch::<DeepRelu>(Init::HeNormal));
}
