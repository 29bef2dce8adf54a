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
use gradguard::image::{self, NonFinite, Persistent};
use gradguard::init::shuffle;
use gradguard::kernels::backend;
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

// Train on the host, fine-tune on the device: the image of the 64-16-10 net above trained
// on the host (`cargo run --release --example digits -- --hidden 16 --epochs 20
// --save-image ...`), in flash. It reuses the SMALL_* statics.
const SMALL_IMAGE_BYTES: usize = <SmallParams as Persistent>::IMAGE_BYTES;
static PRETRAINED: &[u8; SMALL_IMAGE_BYTES] =
    include_bytes!("../../tests/data/digits-64-16-10.ggpi");
// A RAM region standing in for a flash sector.
static mut SECTOR: [u8; SMALL_IMAGE_BYTES] = [0; SMALL_IMAGE_BYTES];

hardfault_exits!();

/// Test digits (of 296) `params` classifies correctly.
fn test_hits(params: &SmallParams, workspace: &mut Workspace<Small, 16>) -> u32 {
    let accuracy = digits::accuracy(
        &Small::default(),
        params,
        &mut workspace.cache,
        &digits::TEST,
    );
    (accuracy * digits::TEST.len() as f32 + 0.5) as u32
}

/// Whether two parameter sets hold the same bits.
fn same_bits(a: &SmallParams, b: &SmallParams) -> bool {
    (0..SmallParams::TENSORS).all(|i| {
        a.tensor(i)
            .iter()
            .zip(b.tensor(i))
            .all(|(x, y)| x.to_bits() == y.to_bits())
    })
}

/// Loads the host-trained image, checks the host's accuracy, fine-tunes, saves to the
/// "sector", resets the parameters, reloads and checks they are bit-identical.
fn host_trained_then_fine_tuned(t: &mut Tally) {
    // SAFETY: single-threaded firmware; these statics are borrowed only here (the earlier
    // borrows in `main` have ended).
    #[allow(static_mut_refs)]
    let (p, g, ws, sector) = unsafe {
        (
            &mut SMALL_PARAMS,
            &mut SMALL_GRADS,
            &mut SMALL_WORKSPACE,
            &mut SECTOR,
        )
    };
    let (stack, loaded) = stack_used(|| image::load(PRETRAINED, p, NonFinite::Reject));
    t.check("host_trained_image_loads_from_flash", loaded.is_ok());
    let host = test_hits(p, ws);
    hprintln!(
        "host-trained 64-16-10 image ({} bytes, loaded with {} bytes of stack): {}/296 test digits (host: 284)",
        SMALL_IMAGE_BYTES,
        stack,
        host
    );
    t.check(
        "host_trained_image_scores_the_hosts_284_of_296",
        host == 284,
    );

    let Ok(mut sgd) = Sgd::new(0.02) else {
        t.finish()
    };
    for _ in 0..2 {
        let _ = digits::train_epoch(&Small::default(), p, g, ws, &mut sgd, &digits::TRAIN);
    }
    let tuned = test_hits(p, ws);
    sector.fill(0xFF); // erased
    let (stack, saved) = stack_used(|| image::save(p, sector));
    // Keep a copy to compare with (the gradients are not needed any more), then "reset".
    for i in 0..SmallParams::TENSORS {
        g.tensor_mut(i).copy_from_slice(p.tensor(i));
        p.tensor_mut(i).fill(0.0);
    }
    let reloaded = image::load(sector, p, NonFinite::Reject).is_ok();
    let identical = same_bits(p, g);
    hprintln!(
        "fine-tuned 2 epochs on the 1501 training digits: {}/296; saved {:?} ({} bytes of stack), reloaded {}, identical {}",
        tuned,
        saved,
        stack,
        reloaded,
        identical
    );
    t.check(
        "fine_tuned_parameters_survive_a_reset_bit_for_bit",
        saved == Ok(SMALL_IMAGE_BYTES) && reloaded && identical && test_hits(p, ws) == tuned,
    );

    sector[100] ^= 0x10; // one flipped bit
    let refused = image::load(sector, p, NonFinite::Reject).is_err();
    t.check(
        "a_corrupt_sector_is_refused_and_changes_nothing",
        refused && same_bits(p, g),
    );
}

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

/// Every value of the case within 10^-4 relative (10^-5 absolute) of the host's: for a
/// build whose matrix products fuse their multiply-adds, which the host's scalar reference
/// does not.
fn case_close(r: &CaseResult) -> bool {
    case_pairs(r).all(|(&a, &b)| {
        let (a, b) = (f32::from_bits(a), f32::from_bits(b));
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-4 * b.abs() + 1e-5
    })
}

/// A deterministic mix of ordinary and adversarial values (±0, subnormals, huge, NaN, ∞).
fn mixed(k: usize) -> f32 {
    const SPECIAL: [f32; 8] = [
        0.0,
        -0.0,
        1e-40,
        -3e-39,
        3e38,
        f32::NAN,
        f32::INFINITY,
        1e-30,
    ];
    let h = (k as u32).wrapping_mul(2_654_435_761).rotate_left(7);
    if h.is_multiple_of(9) {
        SPECIAL[(h / 9 % 8) as usize]
    } else {
        (h % 2001) as f32 / 500.0 - 2.0
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// SGD, whose blocks of eight run as VFP code on this chip (`kernels::cortex_m`), and the
/// matrix kernels (VFP or Helium code), against naive loops in the reference order, bit for
/// bit: shapes with blocks of eight, tails and odd rows, adversarial values, both gradient
/// modes. Where this build's matrix products fuse (Helium), the loops fuse the same steps.
fn kernels_match_naive_loops(t: &mut Tally) {
    // Where the matrix products fuse (Helium) each block is fused unless it met a flush and
    // took the VFP code instead: either model, per element (both are exact).
    let expect = if backend().fuses_multiply_add() {
        Expect::Either
    } else {
        Expect::Plain
    };
    // Blocks with a tail and an odd row; the footprint net's second layer (batch 3: this
    // firmware leaves the M55 18 KB of stack); pairs of rows only; a single row (no pair:
    // all portable); fewer than eight columns.
    let ok = kernels_match_naive_loops_at::<19, 5, 3>(mixed, expect)
        & kernels_match_naive_loops_at::<32, 10, 3>(mixed, expect)
        & kernels_match_naive_loops_at::<24, 4, 1>(mixed, expect)
        & kernels_match_naive_loops_at::<16, 1, 2>(mixed, expect)
        & kernels_match_naive_loops_at::<7, 3, 2>(mixed, expect)
        & overwritten_sums_start_at_plus_zero();
    t.check(
        "vfp_sgd_and_backward_kernels_match_naive_loops_bit_for_bit",
        ok,
    );
}

/// ReLU's forward and backward kernels (VFP compare-and-select, or integer MVE code on a
/// Helium build) against `Relu.value(z)` and `dy · Relu.derivative(z)` for every pair of 17
/// bit patterns (both zeros, subnormals, the extremes, both infinities, NaNs of both signs
/// and a signalling one), on 289 values: whole blocks and a tail.
#[inline(never)] // 4.6 KB of arrays: its own frame, not main's (the M55 firmware has 18 KB of stack)
fn relu_kernels_match_formulas_on_special_values(t: &mut Tally) {
    use gradguard::kernels::{activation_backward, activation_forward};
    use gradguard::Elementwise;
    const BITS: [u32; 17] = [
        0x0000_0000,
        0x8000_0000,
        0x0000_0001,
        0x8000_0001,
        0x007F_FFFF,
        0x8080_0000,
        0x3F80_0000,
        0xBF80_0000,
        0x7F7F_FFFF,
        0xFF7F_FFFF,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0xFFC0_0000,
        0x7F80_0001,
        0xFF80_0001,
        0x0080_0000,
    ];
    const N: usize = BITS.len() * BITS.len();
    let z: [f32; N] = core::array::from_fn(|k| f32::from_bits(BITS[k / BITS.len()]));
    let dy: [f32; N] = core::array::from_fn(|k| f32::from_bits(BITS[k % BITS.len()]));
    let (mut a, mut d) = ([7.0f32; N], [7.0f32; N]);
    activation_forward(&Relu, &z, &mut a);
    activation_backward(&Relu, &z, &dy, &mut d);
    let mut ok = true;
    for k in 0..N {
        ok &= same(a[k], Relu.value(z[k])) && same(d[k], dy[k] * Relu.derivative(z[k]));
    }
    t.check("relu_kernels_match_formulas_on_special_values", ok);
}

/// FPSCR's cumulative flags IDC and UFC: once either is set, gradguard's Helium blocks
/// decline and the VFP code computes (it never clears them).
fn flush_flags_set() -> bool {
    cortex_m::register::fpscr::read().bits() & 0x88 != 0
}

/// Run first, while no flush flag is set: on a Helium build the matrix products take the
/// fused MVE blocks, bit for bit a fused loop in the reference order (values that keep
/// every product and sum normal, so nothing flushes); elsewhere the plain loop's bits.
fn helium_blocks_fuse_in_reference_order(t: &mut Tally) {
    let fuses = backend().fuses_multiply_add();
    let expect = if fuses { Expect::Fused } else { Expect::Plain };
    let clear = !flush_flags_set();
    let ok = kernels_match_naive_loops_at::<32, 10, 3>(ordinary, expect)
        & kernels_match_naive_loops_at::<19, 5, 3>(ordinary, expect)
        & kernels_match_naive_loops_at::<33, 9, 1>(ordinary, expect);
    let still_clear = !flush_flags_set();
    // The program's first flush, in dW's only block: the product 3e38 × −3e-39 = −0.9, which
    // a flushed input would make 0. The block must decline after computing and take the VFP
    // code, so every element is the plain loop's.
    let mut x = [[1.5f32; 8]; 1];
    x[0][0] = 3e38;
    let dz = [[-3e-39f32, 0.25]];
    let (mut dw, mut db) = ([[0.0f32; 8]; 2], [0.0f32; 2]);
    gradguard::kernels::dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
    let mut flush_ok = dw[0][0] < -0.8;
    for o in 0..2 {
        for i in 0..8 {
            flush_ok &= Expect::Plain.accepts(dw[o][i], |_| 0.0 + dz[0][o] * x[0][i]);
        }
    }
    hprintln!(
        "matrix products: {} (flush flags clear at start: {}, after ordinary values: {}, after subnormals: {})",
        if fuses { "Helium, fused" } else { "VFP, not fused" },
        clear,
        still_clear,
        !flush_flags_set()
    );
    t.check(
        "matrix_kernels_fuse_exactly_where_the_build_does",
        clear && ok && (!fuses || still_clear),
    );
    t.check(
        "a_block_that_flushes_a_subnormal_takes_the_exact_path",
        flush_ok && (!fuses || flush_flags_set()),
    );
}

/// Values in [-2, 2] in steps of 0.002: every product and sum of a few of them is normal or 0.
fn ordinary(k: usize) -> f32 {
    let h = (k as u32).wrapping_mul(2_654_435_761).rotate_left(7);
    (h % 2001) as f32 / 500.0 - 2.0
}

/// What the kernels' results must equal: the plain loop (a rounded product, then a rounded
/// sum), the loop with each whole block's steps fused, or either (per element).
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Plain,
    Fused,
    Either,
}

impl Expect {
    /// Whether `v` is what `reference(fused)` computes under this expectation.
    fn accepts(self, v: f32, reference: impl Fn(bool) -> f32) -> bool {
        match self {
            Expect::Plain => same(v, reference(false)),
            Expect::Fused => same(v, reference(true)),
            Expect::Either => same(v, reference(false)) || same(v, reference(true)),
        }
    }
}

/// Products that are all −0.0: the overwritten sums start at +0.0, as the reference's do,
/// so they are +0.0 (+0.0 + −0.0), not −0.0.
fn overwritten_sums_start_at_plus_zero() -> bool {
    use gradguard::kernels::{dense_backward_input, dense_backward_params};
    let (x, w, dz) = ([[-0.0f32; 16]; 2], [[-0.0f32; 16]; 4], [[1.0f32; 4]; 2]);
    let (mut dw, mut db, mut dx) = ([[7.0f32; 16]; 4], [7.0f32; 4], [[7.0f32; 16]; 2]);
    dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
    dense_backward_input(&w, &dz, &mut dx);
    let sums = dw.as_flattened().iter().chain(dx.as_flattened());
    sums.into_iter().all(|v| v.to_bits() == 0)
}

/// `acc + a·b` as the kernel computes that step: fused (one rounding) or a rounded product
/// and a rounded sum.
fn step(fused: bool, acc: f32, a: f32, b: f32) -> f32 {
    if fused {
        libm::fmaf(a, b, acc)
    } else {
        acc + a * b
    }
}

// Out of line: inlined, the instances' arrays would share one frame, too large for the M55's
// stack.
#[inline(never)]
fn kernels_match_naive_loops_at<const IN: usize, const OUT: usize, const B: usize>(
    value: fn(usize) -> f32,
    expect: Expect,
) -> bool {
    // On a microcontroller the public kernels are the scalar reference (no SIMD backend),
    // whose matrix products fuse their whole blocks in a build for a CPU with Helium.
    use gradguard::kernels::{
        activation_backward, activation_forward, dense_backward_input, dense_backward_params,
        dense_forward, sgd_momentum_update, sgd_update,
    };
    use gradguard::Elementwise;
    // The whole blocks: rows in pairs, columns in eights (dW, dX); every output (forward).
    let paired_rows = OUT / 2 * 2;
    let block_columns = if OUT >= 2 { IN / 8 * 8 } else { 0 };
    let x: [[f32; IN]; B] = core::array::from_fn(|s| core::array::from_fn(|i| value(s * IN + i)));
    let dz: [[f32; OUT]; B] =
        core::array::from_fn(|s| core::array::from_fn(|o| value(100 + s * OUT + o)));
    let w: [[f32; IN]; OUT] =
        core::array::from_fn(|o| core::array::from_fn(|i| value(300 + o * IN + i)));
    let b: [f32; OUT] = core::array::from_fn(|o| value(500 + o));
    let mut ok = true;
    let mut z = [[7.0f32; OUT]; B];
    dense_forward(&w, &b, &x, &mut z);
    for s in 0..B {
        for o in 0..OUT {
            ok &= expect.accepts(z[s][o], |fused| {
                let mut acc = 0.0f32;
                for i in 0..IN {
                    acc = step(fused, acc, w[o][i], x[s][i]);
                }
                acc + b[o]
            });
        }
    }
    let (mut dw, mut db) = ([[7.0f32; IN]; OUT], [7.0f32; OUT]);
    for (round, mode) in [GradMode::Overwrite, GradMode::Accumulate]
        .into_iter()
        .enumerate()
    {
        let (before_w, before_b) = (dw, db);
        dense_backward_params(&dz, &x, &mut dw, &mut db, mode);
        for o in 0..OUT {
            let mut acc_b = if round == 0 { 0.0 } else { before_b[o] };
            for dzs in &dz {
                acc_b += dzs[o];
            }
            ok &= same(db[o], acc_b);
            for i in 0..IN {
                let block = o < paired_rows && i < block_columns;
                ok &= expect.accepts(dw[o][i], |fused| {
                    let mut acc = if round == 0 { 0.0 } else { before_w[o][i] };
                    for (dzs, xs) in dz.iter().zip(&x) {
                        acc = step(fused && block, acc, dzs[o], xs[i]);
                    }
                    acc
                });
            }
        }
    }
    let mut dx = [[7.0f32; IN]; B];
    dense_backward_input(&w, &dz, &mut dx);
    for s in 0..B {
        for i in 0..IN {
            ok &= expect.accepts(dx[s][i], |fused| {
                let mut acc = 0.0f32;
                for o in 0..OUT {
                    let block = o < paired_rows && i < block_columns;
                    acc = step(fused && block, acc, dz[s][o], w[o][i]);
                }
                acc
            });
        }
    }
    let g = dw;
    let mut updated = w;
    sgd_update(updated.as_flattened_mut(), g.as_flattened(), 0.03, 1e-3);
    for (u, (&w0, &g0)) in updated
        .as_flattened()
        .iter()
        .zip(w.as_flattened().iter().zip(g.as_flattened()))
    {
        ok &= same(*u, w0 - 0.03 * (g0 + 1e-3 * w0));
    }
    // ReLU's forward and backward (VFP compare-and-select on this chip) against the
    // activation's own scalar formulas, over x (z) and w (dy).
    let (zs, dys) = (x.as_flattened(), w.as_flattened());
    let mut a = [[7.0f32; IN]; B];
    activation_forward(&Relu, zs, a.as_flattened_mut());
    for (&a, &z) in a.as_flattened().iter().zip(zs) {
        ok &= same(a, Relu.value(z));
    }
    let mut d = [[7.0f32; IN]; B];
    activation_backward(&Relu, zs, dys, d.as_flattened_mut());
    for ((&d, &z), &dy) in d.as_flattened().iter().zip(zs).zip(dys) {
        ok &= same(d, dy * Relu.derivative(z));
    }
    let mut updated = w;
    let mut velocity: [[f32; IN]; OUT] =
        core::array::from_fn(|o| core::array::from_fn(|i| value(700 + o * IN + i)));
    let v0 = velocity;
    sgd_momentum_update(
        updated.as_flattened_mut(),
        g.as_flattened(),
        velocity.as_flattened_mut(),
        0.03,
        0.9,
        1e-3,
    );
    let before = w
        .as_flattened()
        .iter()
        .zip(g.as_flattened())
        .zip(v0.as_flattened());
    let after = updated.as_flattened().iter().zip(velocity.as_flattened());
    for (((&w0, &g0), &v), (&u, &v1)) in before.zip(after) {
        let expected_v = 0.9 * v + (g0 + 1e-3 * w0);
        ok &= same(v1, expected_v) && same(u, w0 - 0.03 * expected_v);
    }
    ok
}

#[entry]
fn main() -> ! {
    let mut t = Tally::new();
    helium_blocks_fuse_in_reference_order(&mut t);
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
    if backend().fuses_multiply_add() {
        // Helium: the matrix products fuse (the kernels' exact test is below).
        t.check(
            "forward_backward_adam_match_the_host_within_rounding",
            case_close(&r),
        );
    } else {
        t.check(
            "forward_backward_adam_match_the_host_bit_for_bit",
            case_mismatches(&r) == 0,
        );
    }

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
    let result = gradguard::Trainer::new(&net, p, g, ws, &mut sgd, &SoftmaxCrossEntropy)
        .step_observed(&x, &y, report);
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

    host_trained_then_fine_tuned(&mut t);
    kernels_match_naive_loops(&mut t);
    relu_kernels_match_formulas_on_special_values(&mut t);

    let bad_label = SoftmaxCrossEntropy.loss_and_gradient(&[[0.0f32; 3]], &[7], &mut [[0.0f32; 3]]);
    t.check("bad_label_is_an_error_value", bad_label.is_err());

    t.finish()
}
