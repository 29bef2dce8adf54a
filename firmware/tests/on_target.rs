//! On-target tests: one firmware image, run under QEMU on the Cortex-M4F, M7 and M55 boards
//! (`cargo test`, `QEMU_MACHINE=mps2-an500 cargo test`,
//! `cargo test --target thumbv8m.main-none-eabihf`). All network state is in statics; no
//! allocator exists.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use gradguard::datasets::digits;
use gradguard::health::{HealthConfig, HealthReport};
use gradguard::init::shuffle;
use gradguard::{Relu, Sgd};
use gradguard_firmware::{hardfault_exits, stack_used, Tally};
use panic_semihosting as _;

// The case the host computes too: forward, backward and Adam must match bit for bit.
include!("../../tests/data/firmware_case.rs");
include!("../../tests/data/firmware_expected.rs");
// Gradient health with known answers: the host runs the same cases (tests/health.rs).
include!("../../tests/data/health_cases.rs");

static mut CASE_PARAMS: CaseParams = CaseParams::ZEROED;
static mut CASE_GRADS: CaseParams = CaseParams::ZEROED;
static mut CASE_WORKSPACE: Workspace<CaseNet, 2> = Workspace::ZEROED;
// Optimiser state in .bss too, configured in place by `run_case`.
static mut CASE_ADAM: Adam<CaseParams> = Adam::ZEROED;

// Training on the device: 64-16-10 ReLU on 320 training digits.
type Small = Seq![Dense<64, 16, Relu>, Dense<16, 10>];
type SmallParams = <Small as Layer>::Params;
static mut SMALL_PARAMS: SmallParams = SmallParams::ZEROED;
static mut SMALL_GRADS: SmallParams = SmallParams::ZEROED;
static mut SMALL_WORKSPACE: Workspace<Small, 16> = Workspace::ZEROED;

// Health: a 10-layer sigmoid net (Xavier) must be flagged Vanishing, a ReLU one (He) not.
type Sig = Dense<32, 32, Sigmoid>;
type DeepSigmoid =
    Seq![Dense<64, 32, Sigmoid>, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Sig, Dense<32, 10>];
type Rl = Dense<32, 32, gradguard::Relu>;
type DeepRelu = Seq![Dense<64, 32, Relu>, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Rl, Dense<32, 10>];
static mut DEEP_SIG_PARAMS: <DeepSigmoid as Layer>::Params = <DeepSigmoid as Layer>::Params::ZEROED;
static mut DEEP_SIG_GRADS: <DeepSigmoid as Layer>::Params = <DeepSigmoid as Layer>::Params::ZEROED;
static mut DEEP_SIG_WS: Workspace<DeepSigmoid, 32> = Workspace::ZEROED;
static mut DEEP_RELU_PARAMS: <DeepRelu as Layer>::Params = <DeepRelu as Layer>::Params::ZEROED;
static mut DEEP_RELU_GRADS: <DeepRelu as Layer>::Params = <DeepRelu as Layer>::Params::ZEROED;
static mut DEEP_RELU_WS: Workspace<DeepRelu, 32> = Workspace::ZEROED;
static mut REPORT: HealthReport<10> = HealthReport::new(HealthConfig::DEFAULT);

hardfault_exits!();

/// Initialises `net` (seed 0) and records the health of one backward pass on the first 32
/// training digits in `report`.
fn first_batch_health<L>(
    net: &L,
    params: &mut L::Params,
    grads: &mut L::Params,
    workspace: &mut Workspace<L, 32>,
    init: Init,
    report: &mut HealthReport<10>,
) where
    L: Layer<Input = [f32; 64], Output = [f32; 10]>,
{
    net.init(params, init, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    let _ = digits::gradient_health(net, params, grads, workspace, &digits::TRAIN, report);
}

#[entry]
fn main() -> ! {
    let mut t = Tally::new();
    // SAFETY: single-threaded firmware; each static is borrowed once, here.
    #[allow(static_mut_refs)]
    let (case_p, case_g, case_ws, case_adam) = unsafe {
        (
            &mut CASE_PARAMS,
            &mut CASE_GRADS,
            &mut CASE_WORKSPACE,
            &mut CASE_ADAM,
        )
    };
    let r = run_case(case_p, case_g, case_ws, case_adam);
    t.check(
        "forward_backward_adam_match_the_host_bit_for_bit",
        case_mismatches(&r) == 0,
    );

    // SAFETY: as above.
    #[allow(static_mut_refs)]
    let (p, g, ws) = unsafe { (&mut SMALL_PARAMS, &mut SMALL_GRADS, &mut SMALL_WORKSPACE) };
    let net = Small::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    net.init(p, Init::HeNormal, &mut rng);
    let mut order = [0u16; 320];
    order.copy_from_slice(&digits::TRAIN[..320]);
    let before = digits::accuracy(&net, p, &mut ws.cache, &digits::TEST);
    let mut sgd = Sgd::new(0.1).unwrap_or_else(|_| t.finish());
    let (stack, ()) = stack_used(|| {
        for _ in 0..15 {
            shuffle(&mut order, &mut rng);
            let _ = digits::train_epoch(&net, p, g, ws, &mut sgd, &order);
        }
    });
    let after = digits::accuracy(&net, p, &mut ws.cache, &digits::TEST);
    hprintln!(
        "64-16-10 ReLU on 320 digits, 15 epochs: test accuracy {}/1000 -> {}/1000; training stack {} bytes",
        (before * 1000.0) as u32,
        (after * 1000.0) as u32,
        stack
    );
    t.check(
        "training_on_320_digits_reaches_80_percent_test_accuracy",
        after >= 0.80,
    );

    // SAFETY: as above.
    #[allow(static_mut_refs)]
    let report = unsafe { &mut REPORT };
    // SAFETY: as above.
    #[allow(static_mut_refs)]
    let (sp, sg, sws) = unsafe { (&mut DEEP_SIG_PARAMS, &mut DEEP_SIG_GRADS, &mut DEEP_SIG_WS) };
    first_batch_health(
        &DeepSigmoid::default(),
        sp,
        sg,
        sws,
        Init::XavierNormal,
        report,
    );
    hprintln!("10-layer sigmoid, Xavier, first batch:\n{}", report);
    t.check(
        "deep_sigmoid_is_flagged_vanishing",
        report.flags().vanishing.is_some(),
    );
    // SAFETY: as above.
    #[allow(static_mut_refs)]
    let (rp, rg, rws) = unsafe {
        (
            &mut DEEP_RELU_PARAMS,
            &mut DEEP_RELU_GRADS,
            &mut DEEP_RELU_WS,
        )
    };
    first_batch_health(&DeepRelu::default(), rp, rg, rws, Init::HeNormal, report);
    t.check(
        "deep_relu_is_not_flagged_vanishing",
        report.flags().vanishing.is_none(),
    );
    t.check(
        "deep_relu_has_no_underflow",
        report.flags().underflow.is_none(),
    );

    // NaN and infinity in the input: a flagged report and a normal return, no fault.
    let mut x = [[0.5f32; 64]; 16];
    x[3][10] = f32::NAN;
    x[7][0] = f32::INFINITY;
    let y = [1usize; 16];
    let result = gradguard::train_step_observed(
        &net,
        p,
        g,
        ws,
        &mut sgd,
        &SoftmaxCrossEntropy,
        &x,
        &y,
        report,
    );
    let loss_is_nan = matches!(result, Ok(l) if l.is_nan());
    let flags = report.flags();
    hprintln!(
        "NaN/Inf input: loss NaN = {}, flags {:?}",
        loss_is_nan,
        flags
    );
    t.check(
        "nan_and_inf_input_are_flagged_exploding_not_a_fault",
        loss_is_nan && flags.exploding.is_some(),
    );
    for (name, case) in health_cases::ALL {
        let result = case();
        if let Err(what) = result {
            hprintln!("{}: {}", name, what);
        }
        t.check(name, result.is_ok());
    }

    let bad_label = SoftmaxCrossEntropy.loss_and_gradient(&[[0.0f32; 3]], &[7], &mut [[0.0f32; 3]]);
    t.check("bad_label_is_an_error_value", bad_label.is_err());

    t.finish()
}
