//! Trains a 64-32-10 ReLU network on the UCI 8×8 digits on a Cortex-M4F, with gradient
//! health tracked on every step, and logs the accuracy and the health report with defmt.
//!
//! The network's state lives in `static`s handed out once by `static_cell` (no `static mut`,
//! no `unsafe`, nothing large on the stack); the weights are initialised in place at boot.
//! Features: `board` (default: defmt over RTT, panics through panic-probe; run with
//! probe-rs) or `qemu` (defmt over semihosting and an exit status; QEMU's netduinoplus2
//! emulates the STM32F405 this is built for). See README.md.
#![no_std]
#![no_main]

#[cfg(all(feature = "board", feature = "qemu"))]
compile_error!("choose one of the features `board` (RTT, probe-rs) and `qemu` (semihosting)");
#[cfg(not(any(feature = "board", feature = "qemu")))]
compile_error!("enable one of the features `board` (RTT, probe-rs) and `qemu` (semihosting)");

#[cfg(feature = "qemu")]
use defmt_semihosting as _;
#[cfg(feature = "board")]
use {defmt_rtt as _, panic_probe as _};

use cortex_m_rt::entry;
use gradguard::datasets::digits;
use gradguard::health::{Flags, HealthConfig, HealthReport};
use gradguard::init::{shuffle, Init};
use gradguard::{
    training_bytes, Dense, Error, Layer, Momentum, Relu, Seq, Sgd, SoftmaxCrossEntropy, Workspace,
    Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use static_cell::ConstStaticCell;

/// The network: 64 pixels → 32 ReLU units → 10 class scores (softmax in the loss).
type Net = Seq![Dense<64, 32, Relu>, Dense<32, 10>];
type Params = <Net as Layer>::Params;
/// Samples per training step.
const BATCH: usize = 8;
const EPOCHS: u32 = 4;
/// Training samples of the digits data set (the rest, 296, are the test set).
const TRAIN_SAMPLES: usize = 1501;
/// The run fails (QEMU exit status 1) below this test accuracy.
const REQUIRED_ACCURACY: f32 = 0.85;

/// Everything training keeps between steps. All of it is zero bytes at reset, so the linker
/// puts it in .bss: it costs no flash and is never built on the stack.
struct Training {
    params: Params,
    grads: Params,
    workspace: Workspace<Net, BATCH>,
    optimizer: Momentum<Params>,
    /// The order of the training samples, shuffled every epoch.
    order: [u16; TRAIN_SAMPLES],
}

static TRAINING: ConstStaticCell<Training> = ConstStaticCell::new(Training {
    params: Params::ZEROED,
    grads: Params::ZEROED,
    workspace: Workspace::ZEROED,
    optimizer: Momentum::ZEROED,
    order: [0; TRAIN_SAMPLES],
});

/// The gradient health of the latest step (a few hundred bytes, in .data).
static REPORT: ConstStaticCell<HealthReport<2>> =
    ConstStaticCell::new(HealthReport::new(HealthConfig::DEFAULT));

#[entry]
fn main() -> ! {
    defmt::info!(
        "gradguard on {}: training needs {} bytes of RAM (+ {} for momentum) and the stack",
        gradguard::kernels::backend(),
        training_bytes::<Net, BATCH>(),
        core::mem::size_of::<Momentum<Params>>()
    );
    match train() {
        Ok(accuracy) if accuracy >= REQUIRED_ACCURACY => finish(true),
        Ok(accuracy) => {
            defmt::error!(
                "test accuracy {}% is below {}%",
                accuracy * 100.0,
                REQUIRED_ACCURACY * 100.0
            );
            finish(false)
        }
        Err(e) => {
            defmt::error!("training stopped: {}", e);
            finish(false)
        }
    }
}

/// Trains for `EPOCHS` epochs and returns the final test accuracy.
fn train() -> Result<f32, Error> {
    // `take` hands out the one `&'static mut` of each cell (it panics if called twice).
    let Training {
        params,
        grads,
        workspace,
        optimizer,
        order,
    } = TRAINING.take();
    let report = REPORT.take();
    let net = Net::default();

    // Weights: He initialisation (for ReLU) from a seeded generator, written in place. A
    // board can seed from its RNG peripheral, or load weights trained on a desktop here
    // (`gradguard::image::load` from an `include_bytes!` image in flash).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2026);
    net.init(params, Init::HeNormal, &mut rng);
    optimizer.configure(Sgd::new(0.01)?, 0.9)?;
    for (slot, &sample) in order.iter_mut().zip(digits::TRAIN.iter()) {
        *slot = sample;
    }
    let accuracy = digits::accuracy(&net, params, &mut workspace.cache, &digits::TEST);
    defmt::info!("test accuracy before training: {}%", accuracy * 100.0);

    let (mut x, mut y) = ([[0.0f32; digits::FEATURES]; BATCH], [0usize; BATCH]);
    let mut accuracy = 0.0;
    for epoch in 1..=EPOCHS {
        shuffle(order, &mut rng);
        let (mut loss_sum, mut steps) = (0.0f32, 0u32);
        let mut flagged = FlagCounts::default();
        // The report counts a ReLU unit as dead in a step when its derivative was 0 for
        // every sample of that step's batch. With 8 samples a few of the 32 always are (3
        // to 8 here), so the `dead_units` flag is raised on most steps. Whether a unit is
        // dead for the data shows over an epoch: `active` records which units were positive
        // for some training sample. At this learning rate one unit is (it was from the
        // start); raise it to 0.05 and 8 of 32 are by the third epoch, for good.
        let mut active = [false; 32];
        for batch in order.chunks_exact(BATCH) {
            if !digits::fill_batch(batch, &mut x, &mut y) {
                break;
            }
            // One SGD-with-momentum step; `report` receives this step's gradient health.
            loss_sum += gradguard::Trainer::new(
                &net,
                params,
                grads,
                workspace,
                optimizer,
                &SoftmaxCrossEntropy,
            )
            .step_observed(&x, &y, report)?;
            steps += 1;
            flagged.add(report.flags());
            // The hidden layer's pre-activations for this batch, from the forward pass.
            for z in &workspace.cache.first.pre_activation {
                for (a, &z) in active.iter_mut().zip(z) {
                    *a |= z > 0.0;
                }
            }
        }
        accuracy = digits::accuracy(&net, params, &mut workspace.cache, &digits::TEST);
        defmt::info!(
            "epoch {}: mean loss {}, test accuracy {}%",
            epoch,
            loss_sum / steps.max(1) as f32,
            accuracy * 100.0
        );
        defmt::info!("  steps that raised each flag (of {}): {}", steps, flagged);
        defmt::info!(
            "  hidden units that were 0 for every training sample of the epoch: {} of 32",
            active.iter().filter(|&&a| !a).count()
        );
        log_layers(report);
    }
    defmt::info!("the last step's full report: {}", report);
    Ok(accuracy)
}

/// One line per layer of the latest step's report, output layer first.
fn log_layers(report: &HealthReport<2>) {
    for h in report.layers_from_output() {
        defmt::info!(
            "  layer {} ({=str}, {} -> {}): |dz| {}, |dW| {}, underflows {}, dead units {}",
            h.layer,
            h.activation,
            h.inputs,
            h.units,
            h.pre_activation_grad.l2_norm(),
            h.weight_grad.l2_norm(),
            h.underflow_count(),
            h.dead_units
        );
    }
}

/// How many steps of an epoch raised each flag.
#[derive(Default, defmt::Format)]
struct FlagCounts {
    underflow: u32,
    vanishing: u32,
    exploding: u32,
    dead_units: u32,
    saturated: u32,
    stalled: u32,
}

impl FlagCounts {
    fn add(&mut self, flags: Flags) {
        let count = |n: &mut u32, flag: Option<u16>| *n += u32::from(flag.is_some());
        count(&mut self.underflow, flags.underflow);
        count(&mut self.vanishing, flags.vanishing);
        count(&mut self.exploding, flags.exploding);
        count(&mut self.dead_units, flags.dead_units);
        count(&mut self.saturated, flags.saturated);
        count(&mut self.stalled, flags.stalled);
    }
}

/// On a board: stays idle after training (probe-rs keeps showing the log; Ctrl-C ends it).
#[cfg(feature = "board")]
fn finish(passed: bool) -> ! {
    if passed {
        defmt::info!("done");
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// On QEMU: exits with status 0 if training reached the required accuracy, else 1.
#[cfg(feature = "qemu")]
fn finish(passed: bool) -> ! {
    use cortex_m_semihosting::debug;
    if passed {
        defmt::info!("done");
    }
    debug::exit(if passed {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::nop();
    }
}

#[cfg(feature = "qemu")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    finish(false)
}

#[cfg(feature = "qemu")]
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    finish(false)
}
