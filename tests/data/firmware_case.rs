// The computation whose results the firmware must reproduce exactly. Included (with
// `include!`) by `tests/firmware_vectors.rs` on the host and by `firmware/tests/on_target.rs`
// on Cortex-M, so both run the same code: a seeded 8-6-5-3 net (tanh, sigmoid, identity),
// forward and backward on a batch of 2, then three Adam steps (exercising libm's sqrt). It
// runs on the scalar kernels, passed explicitly (`Scalar`), which is what the firmware has.

use gradguard::health::NoHealth;
use gradguard::init::Init;
use gradguard::kernels::Scalar;
use gradguard::{
    Adam, BackwardContext, Dense, GradMode, Layer, Loss, Parameters, Phase, Seq, Sigmoid,
    SoftmaxCrossEntropy, Tanh, Trainer, Workspace, Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type CaseNet = Seq![Dense<8, 6, Tanh>, Dense<6, 5, Sigmoid>, Dense<5, 3>];
type CaseParams = <CaseNet as Layer>::Params;
const CASE_SCALARS: usize = 8 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3;

/// Everything the case produces, as f32 bit patterns.
struct CaseResult {
    output: [u32; 6],
    loss: u32,
    grads: [u32; CASE_SCALARS],
    input_grad: [u32; 16],
    params_after_adam: [u32; CASE_SCALARS],
}

fn flatten(p: &CaseParams, out: &mut [u32; CASE_SCALARS]) {
    let mut k = 0;
    for i in 0..CaseParams::TENSORS {
        for &v in p.tensor(i) {
            if let Some(slot) = out.get_mut(k) {
                *slot = v.to_bits();
            }
            k += 1;
        }
    }
}

/// `adam` may be [`Adam::ZEROED`] (e.g. a `static`): it is configured here, in place.
fn run_case(
    params: &mut CaseParams,
    grads: &mut CaseParams,
    workspace: &mut Workspace<CaseNet, 2>,
    adam: &mut Adam<CaseParams>,
) -> CaseResult {
    let net = CaseNet::default();
    net.init(params, Init::XavierUniform, &mut Xoshiro256PlusPlus::seed_from_u64(42));
    let mut x = [[0.0f32; 8]; 2];
    for (k, v) in x.iter_mut().flatten().enumerate() {
        *v = (k as f32 - 7.5) * 0.37;
    }
    let labels = [2usize, 0];
    net.forward_on(Scalar::new(), Phase::Inference, params, &x, &mut workspace.cache);
    let mut result = CaseResult {
        output: [0; 6],
        loss: 0,
        grads: [0; CASE_SCALARS],
        input_grad: [0; 16],
        params_after_adam: [0; CASE_SCALARS],
    };
    for (slot, v) in result.output.iter_mut().zip(CaseNet::output(&workspace.cache).iter().flatten()) {
        *slot = v.to_bits();
    }
    let loss = SoftmaxCrossEntropy
        .loss_and_gradient_on(Scalar::new(), CaseNet::output(&workspace.cache), &labels, &mut workspace.output_grad)
        .unwrap_or(f32::NAN);
    result.loss = loss.to_bits();
    let mut dx = [[0.0f32; 8]; 2];
    let mut context = BackwardContext { isa: Scalar::new(), mode: GradMode::Overwrite, observer: &mut NoHealth, layer: 0 };
    net.backward_at(params, &x, &mut workspace.cache, &workspace.output_grad, grads, Some(&mut dx), &mut context);
    flatten(grads, &mut result.grads);
    for (slot, v) in result.input_grad.iter_mut().zip(dx.iter().flatten()) {
        *slot = v.to_bits();
    }
    if adam.configure(0.01, 0.9, 0.999, 1e-8, 0.0).is_ok() {
        let mut trainer = Trainer::new(&net, params, grads, workspace, adam, &SoftmaxCrossEntropy).with_isa(Scalar::new());
        for _ in 0..3 {
            let _ = trainer.step(&x, &labels);
        }
    }
    flatten(params, &mut result.params_after_adam);
    result
}

/// Canonical NaN so that NaN payloads (unspecified in Rust) cannot make a false mismatch.
fn canonical(bits: u32) -> u32 {
    if f32::from_bits(bits).is_nan() {
        0x7fc0_0000
    } else {
        bits
    }
}

/// Number of values that differ from the expected constants.
fn case_mismatches(r: &CaseResult) -> usize {
    case_pairs(r).filter(|(a, b)| canonical(**a) != canonical(**b)).count()
}

/// Every value of the case (as bits) beside the expected one.
fn case_pairs(r: &CaseResult) -> impl Iterator<Item = (&u32, &u32)> {
    r.output
        .iter()
        .zip(EXPECTED_OUTPUT.iter())
        .chain(core::iter::once((&r.loss, &EXPECTED_LOSS)))
        .chain(r.grads.iter().zip(EXPECTED_GRADS.iter()))
        .chain(r.input_grad.iter().zip(EXPECTED_INPUT_GRAD.iter()))
        .chain(r.params_after_adam.iter().zip(EXPECTED_PARAMS_AFTER_ADAM.iter()))
}
