//! The footprint firmware: a Dense(64→32) + ReLU + Dense(32→10) + softmax cross-entropy + SGD
//! network trained from statics, built without (`cargo build --release`) and with health
//! tracking (`--features health`), and with the parameters saved to and loaded from an image
//! after training (`--features image`, for the code size of the image writer and reader).
//! With `--features batch-norm` the net is Dense(64→32) + BatchNorm(32) with the ReLU fused
//! into it + Dense(32→10). `footprint.sh` runs it, counts instructions between the markers
//! and reads its sizes. No digits data is linked, so flash is the code itself.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use gradguard::init::Init;
use gradguard::{
    training_bytes, Dense, Layer, Relu, Seq, Sgd, SoftmaxCrossEntropy, Workspace, Zeroed,
};
use gradguard_firmware::{
    bench_start, bench_stop, dense_start, dense_stop, hardfault_exits, naive_start, naive_stop,
    stack_used, Tally,
};
use panic_semihosting as _;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[cfg(not(feature = "batch-norm"))]
type Net = Seq![Dense<64, 32, Relu>, Dense<32, 10>];
#[cfg(feature = "batch-norm")]
type Net = Seq![Dense<64, 32>, gradguard::BatchNorm<32, Relu>, Dense<32, 10>];
type Params = <Net as Layer>::Params;
const BATCH: usize = 8;
/// Health records: one per parametrised layer.
#[cfg(feature = "health")]
const LAYERS: usize = <Params as gradguard::Parameters>::LAYERS;

static mut PARAMS: Params = Params::ZEROED;
static mut GRADS: Params = Params::ZEROED;
static mut WORKSPACE: Workspace<Net, BATCH> = Workspace::ZEROED;
#[cfg(feature = "health")]
static mut REPORT: gradguard::health::HealthReport<LAYERS> =
    gradguard::health::HealthReport::new(gradguard::health::HealthConfig::DEFAULT);

/// A RAM region standing in for the flash sector the image is written to.
#[cfg(feature = "image")]
static mut SECTOR: [u8; <Params as gradguard::image::Persistent>::IMAGE_BYTES] =
    [0; <Params as gradguard::image::Persistent>::IMAGE_BYTES];

/// Writes the parameters' image (what the size report attributes to the image writer).
#[cfg(feature = "image")]
#[no_mangle]
#[inline(never)]
pub fn gradguard_image_save(params: &Params, sector: &mut [u8]) -> bool {
    gradguard::image::save(params, sector).is_ok()
}

/// Verifies and loads the parameters' image in place (the image reader).
#[cfg(feature = "image")]
#[no_mangle]
#[inline(never)]
pub fn gradguard_image_load(sector: &[u8], params: &mut Params) -> bool {
    gradguard::image::load(sector, params, gradguard::image::NonFinite::Reject).is_ok()
}

type Square = Dense<64, 64>;
static mut SQUARE_PARAMS: <Square as Layer>::Params = <Square as Layer>::Params::ZEROED;
static mut SQUARE_CACHE: <Square as Layer>::Cache<1> = <Square as Layer>::Cache::<1>::ZEROED;

hardfault_exits!();

/// One training step; everything gradguard does is inlined here (or in `gradguard::`
/// symbols), which is what the size report attributes to the crate.
#[no_mangle]
#[inline(never)]
pub fn gradguard_training_step(
    params: &mut Params,
    grads: &mut Params,
    workspace: &mut Workspace<Net, BATCH>,
    sgd: &mut Sgd,
    x: &[[f32; 64]; BATCH],
    y: &[usize; BATCH],
) -> f32 {
    #[cfg(feature = "health")]
    // SAFETY: single-threaded; the only borrow of REPORT.
    #[allow(static_mut_refs)]
    let observer = unsafe { &mut REPORT };
    #[cfg(not(feature = "health"))]
    let observer = &mut gradguard::health::NoHealth; // what `train_step` passes
    gradguard::Trainer::new(
        &Net::default(),
        params,
        grads,
        workspace,
        sgd,
        &SoftmaxCrossEntropy,
    )
    .step_observed(x, y, observer)
    .unwrap_or(f32::NAN)
}

/// A 64×64 dense forward for one sample.
#[no_mangle]
#[inline(never)]
pub fn gradguard_dense_forward(
    params: &<Square as Layer>::Params,
    x: &[[f32; 64]; 1],
    cache: &mut <Square as Layer>::Cache<1>,
) {
    Square::default().forward(params, x, cache);
}

/// The same 4096 multiply-adds as a naive dot-product loop, for comparison.
#[no_mangle]
#[inline(never)]
pub fn naive_dense_forward(w: &[[f32; 64]; 64], x: &[f32; 64], out: &mut [f32; 64]) {
    for (o, row) in out.iter_mut().zip(w.iter()) {
        let mut acc = 0.0f32;
        for (a, b) in row.iter().zip(x.iter()) {
            acc += a * b;
        }
        *o = acc;
    }
}

#[entry]
fn main() -> ! {
    let mut t = Tally::new();
    // SAFETY: single-threaded firmware; each static is borrowed once, here.
    #[allow(static_mut_refs)]
    let (params, grads, workspace, square, square_cache) = unsafe {
        (
            &mut PARAMS,
            &mut GRADS,
            &mut WORKSPACE,
            &mut SQUARE_PARAMS,
            &mut SQUARE_CACHE,
        )
    };
    let net = Net::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    net.init(params, Init::HeNormal, &mut rng);
    Square::default().init(square, Init::XavierUniform, &mut rng);
    let mut x = [[0.0f32; 64]; BATCH];
    for (k, v) in x.iter_mut().flatten().enumerate() {
        *v = (k % 17) as f32 / 16.0;
    }
    let y: [usize; BATCH] = core::array::from_fn(|k| k % 10);
    let mut sgd = Sgd::new(0.05).unwrap_or_else(|_| t.finish());
    // Warm-up step, then the measured one.
    let first = gradguard_training_step(params, grads, workspace, &mut sgd, &x, &y);
    let (stack, second) = stack_used(|| {
        bench_start();
        let loss = gradguard_training_step(params, grads, workspace, &mut sgd, black_box(&x), &y);
        bench_stop();
        loss
    });
    let x1 = [x[0]];
    dense_start();
    gradguard_dense_forward(square, black_box(&x1), square_cache);
    dense_stop();
    let mut naive = [0.0f32; 64];
    naive_start();
    naive_dense_forward(&square.weights, black_box(&x1[0]), &mut naive);
    naive_stop();
    hprintln!("training_bytes {}", training_bytes::<Net, BATCH>());
    hprintln!("stack_bytes_training_step {}", stack);
    // Multiply-adds the step executes: forward and dW of both layers, dX of the second only
    // (the first layer's input gradient is never computed).
    // (A batch norm adds O(BATCH·32) operations, no matrix products.)
    let macs = 2 * BATCH * (64 * 32 + 32 * 10) + BATCH * 32 * 10;
    hprintln!("macs_training_step {}", macs);
    t.check("loss_decreases", second < first);
    #[cfg(feature = "image")]
    {
        // SAFETY: single-threaded; the only borrow of SECTOR.
        #[allow(static_mut_refs)]
        let sector = unsafe { &mut SECTOR };
        let saved = gradguard_image_save(params, black_box(sector));
        // One output bias, before and after (the output layer is the last of the chain).
        #[cfg(not(feature = "batch-norm"))]
        let bias = |p: &Params| p.second.bias[3].to_bits();
        #[cfg(feature = "batch-norm")]
        let bias = |p: &Params| p.second.second.bias[3].to_bits();
        let before = bias(params);
        t.check(
            "image_round_trip",
            saved && gradguard_image_load(black_box(sector), params) && bias(params) == before,
        );
    }
    // A Helium build fuses the products (in the same order): then the reference is the
    // fused loop, computed here (not timed).
    // (A constant, so other builds do not link the software `fmaf`.)
    const FUSED: bool = gradguard::kernels::Backend::Scalar.fuses_multiply_add();
    let mut expected = naive;
    if FUSED {
        expected = core::array::from_fn(|o| {
            let row = square.weights[o].iter().zip(x1[0].iter());
            let dot = row.fold(0.0f32, |acc, (&w, &x)| libm::fmaf(w, x, acc));
            dot + square.bias[o]
        });
    }
    let same = square_cache.output[0]
        .iter()
        .zip(expected.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits());
    t.check("dense_forward_equals_the_naive_loop_bit_for_bit", same);
    t.finish()
}
