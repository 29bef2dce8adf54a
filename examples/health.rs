//! Gradient health reports: a 10-layer sigmoid net (Xavier init) against a 10-layer ReLU
//! net (He init) on one batch of digits, then a deep chain of sigmoid units whose gradient
//! underflows.
//!
//! ```text
//! cargo run --release --example health
//! ```

use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::Init;
use gradguard::{
    Chain, Dense, GradMode, Layer, Loss, Relu, Seq, Sigmoid, SoftmaxCrossEntropy, Zeroed,
};
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
    let (mut x, mut y) = ([[0.0; 64]; 32], [0usize; 32]);
    digits::fill_batch(&digits::TRAIN[..32], &mut x, &mut y);
    let mut cache = Box::new(L::Cache::<32>::ZEROED);
    net.forward(&params, &x, &mut cache);
    let mut dy = [[0.0f32; 10]; 32];
    let loss = SoftmaxCrossEntropy.loss_and_gradient(L::output(&cache), &y, &mut dy);
    println!("loss {loss:?}");
    let mut grads = Box::new(L::Params::ZEROED);
    let mut report = HealthReport::<10>::new(HealthConfig::DEFAULT);
    net.backward_observed(
        &params,
        &x,
        &mut cache,
        &dy,
        &mut grads,
        None,
        GradMode::Overwrite,
        &mut report,
    );
    report
}

type Unit = Dense<1, 1, Sigmoid>;
type C2 = Seq![Unit, Unit];
type C4 = Chain<C2, C2>;
type C8 = Chain<C4, C4>;
type C16 = Chain<C8, C8>;
type C32 = Chain<C16, C16>;
type C64 = Chain<C32, C32>;

fn main() {
    println!("== 10-layer sigmoid, Xavier init: the classic vanishing gradient");
    println!("{}", first_batch::<DeepSigmoid>(Init::XavierNormal));
    println!("== 10-layer ReLU, He init");
    println!("{}", first_batch::<DeepRelu>(Init::HeNormal));

    println!("== 64 sigmoid units in a chain, w = 1, x = 0: the gradient underflows");
    let net = C64::default();
    let mut params = Box::new(<C64 as Layer>::Params::ZEROED);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    net.init(&mut params, Init::Zeros, &mut rng);
    use gradguard::Parameters;
    for i in (0..<<C64 as Layer>::Params as Parameters>::TENSORS).step_by(2) {
        params.tensor_mut(i)[0] = 1.0;
    }
    let x = [[0.0]];
    let mut cache = Box::new(<C64 as Layer>::Cache::<1>::ZEROED);
    net.forward(&params, &x, &mut cache);
    let mut grads = Box::new(<C64 as Layer>::Params::ZEROED);
    let mut report = Box::new(HealthReport::<64>::new(HealthConfig::DEFAULT));
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
    for layer in report.layers_from_output().iter().filter(|l| l.layer < 8) {
        println!(
            "layer {:>2}: dz = {:e} ({:?}), underflow events {}",
            layer.layer,
            layer.pre_activation_grad.max_abs,
            gradguard::health::classify(layer.pre_activation_grad.max_abs),
            layer.underflow_count()
        );
    }
    println!("flags: {:?}", report.flags());
}
