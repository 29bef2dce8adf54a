//! Tests that prove the layers learn: XOR with a 2-4-1 net, and the digits data set.

use gradguard::datasets::digits;
use gradguard::init::{shuffle, Init};
use gradguard::{
    argmax, train_step, BinaryCrossEntropyWithLogits, Dense, Layer, Relu, Seq, Sgd, Tanh,
    Workspace, Zeroed,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[test]
fn xor_converges_with_a_2_4_1_net_for_every_seed_tried() {
    type Net = Seq![Dense<2, 4, Tanh>, Dense<4, 1>];
    let net = Net::default();
    let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let t = [[0.0], [1.0], [1.0], [0.0]];
    for seed in 0..8 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let (mut p, mut g) = (
            <Net as Layer>::Params::ZEROED,
            <Net as Layer>::Params::ZEROED,
        );
        net.init(&mut p, Init::XavierNormal, &mut rng);
        let mut ws = Workspace::<Net, 4>::ZEROED;
        let mut sgd = Sgd::new(0.5).unwrap();
        let mut loss = f32::INFINITY;
        for _ in 0..3000 {
            loss = train_step(
                &net,
                &mut p,
                &mut g,
                &mut ws,
                &mut sgd,
                &BinaryCrossEntropyWithLogits,
                &x,
                &t,
            )
            .unwrap();
        }
        net.forward(&p, &x, &mut ws.cache);
        let predicted: Vec<bool> = Net::output(&ws.cache).iter().map(|o| o[0] > 0.0).collect();
        assert_eq!(
            predicted,
            [false, true, true, false],
            "seed {seed}: loss {loss}"
        );
        assert!(loss < 0.05, "seed {seed}: loss {loss}");
    }
}

/// 64-32-10 ReLU, He init, SGD lr 0.1, batch 32, stratified split: ≥ 95 % test accuracy
/// within 30 epochs (the float32 numpy reference in data/README.md reaches 97.2 % mean).
#[test]
fn digits_64_32_10_relu_reaches_95_percent_within_30_epochs() {
    type Net = Seq![Dense<64, 32, Relu>, Dense<32, 10>];
    let net = Net::default();
    for seed in [0u64, 1, 2] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p = Box::new(<Net as Layer>::Params::ZEROED);
        let mut g = Box::new(<Net as Layer>::Params::ZEROED);
        let mut ws = Box::new(Workspace::<Net, 32>::ZEROED);
        net.init(&mut p, Init::HeNormal, &mut rng);
        let mut sgd = Sgd::new(0.1).unwrap();
        let mut order = digits::TRAIN;
        let mut best = 0.0f32;
        for _ in 0..30 {
            shuffle(&mut order, &mut rng);
            digits::train_epoch(&net, &mut p, &mut g, &mut ws, &mut sgd, &order).unwrap();
            best = best.max(digits::accuracy(&net, &p, &mut ws.cache, &digits::TEST));
        }
        let last = digits::accuracy(&net, &p, &mut ws.cache, &digits::TEST);
        println!("seed {seed}: final test accuracy {last:.4} (best {best:.4})");
        assert!(
            last >= 0.95,
            "seed {seed}: final test accuracy {last} (best {best})"
        );
    }
}

/// The committed images of host-trained nets (made by `examples/digits.rs --save-image` on
/// the AVX-512 backend) load and classify the same test digits on every backend: 288 of 296
/// for 64-32-10, 284 for 64-16-10. The firmware tests load the 64-16-10 image from flash
/// and must get 284 on the device.
#[test]
fn the_committed_host_trained_images_load_and_score_as_on_the_host() {
    use gradguard::image::{self, NonFinite, Persistent};
    fn check<const H: usize>(image_bytes: &[u8], hits: f32) {
        type Net<const H: usize> = Seq![Dense<64, H, Relu>, Dense<H, 10>];
        type Params<const H: usize> = <Net<H> as Layer>::Params;
        assert_eq!(image_bytes.len(), <Params<H> as Persistent>::IMAGE_BYTES);
        let mut p = Box::new(Params::<H>::ZEROED);
        image::load(image_bytes, &mut *p, NonFinite::Reject).unwrap();
        let mut cache = Box::new(<Net<H> as Layer>::Cache::<8>::ZEROED);
        let accuracy = digits::accuracy(&Net::<H>::default(), &p, &mut cache, &digits::TEST);
        assert_eq!((accuracy * 296.0).round(), hits, "64-{H}-10");
        let mut again = vec![0u8; image_bytes.len()];
        image::save(&*p, &mut again).unwrap();
        assert_eq!(again, image_bytes, "the image does not save back to itself");
    }
    check::<32>(include_bytes!("data/digits-64-32-10.ggpi"), 288.0);
    check::<16>(include_bytes!("data/digits-64-16-10.ggpi"), 284.0);
}

#[test]
fn the_split_matches_the_data_readme() {
    // Class counts of the stratified split (data/README.md).
    let mut train = [0usize; 10];
    let mut test = [0usize; 10];
    digits::TRAIN
        .iter()
        .for_each(|&i| train[digits::label(i.into()).unwrap()] += 1);
    digits::TEST
        .iter()
        .for_each(|&i| test[digits::label(i.into()).unwrap()] += 1);
    assert_eq!(train, [149, 152, 148, 153, 151, 152, 151, 150, 145, 150]);
    assert_eq!(test, [29, 30, 29, 30, 30, 30, 30, 29, 29, 30]);
    assert_eq!(
        &digits::TEST[..10],
        &[35, 39, 48, 52, 53, 54, 56, 60, 65, 68]
    );
    // The README's checksum values: record 0 starts 0 0 5 13 9 1 0 0.
    let x = digits::features(0).unwrap();
    assert_eq!(
        x[..8].iter().map(|v| v * 16.0).collect::<Vec<_>>(),
        [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        (0..10)
            .map(|i| digits::label(i).unwrap())
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let _ = argmax(&x);
}

mod guards {
    use gradguard::health::NoHealth;
    use gradguard::init::Init;
    use gradguard::{
        accumulate_gradients, compute_gradients, train_step, Adam, Dense, Layer, MicroBatch,
        Momentum, Optimizer, Parameters, Seq, Sgd, SoftmaxCrossEntropy, StepGuard, StepOutcome,
        Tanh, Trainer, Workspace, Zeroed,
    };
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    type Net = Seq![Dense<8, 16, Tanh>, Dense<16, 4>];
    type P = <Net as Layer>::Params;

    /// One guarded softmax-cross-entropy step of `L` (unobserved).
    fn guarded_step<L, O, const N: usize, const B: usize>(
        p: &mut L::Params,
        g: &mut L::Params,
        ws: &mut Workspace<L, B>,
        opt: &mut O,
        x: &[L::Input; B],
        y: &[usize; B],
        guard: &StepGuard,
    ) -> StepOutcome
    where
        L: Layer<Output = [f32; N]> + Default,
        O: Optimizer<L::Params>,
    {
        let net = L::default();
        let loss = &SoftmaxCrossEntropy;
        Trainer::new(&net, p, g, ws, opt, loss)
            .step_guarded(x, y, guard, &mut NoHealth)
            .unwrap()
    }

    fn batch<const B: usize>(seed: u64) -> ([[f32; 8]; B], [usize; B]) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut x = [[0.0; 8]; B];
        for v in x.iter_mut().flatten() {
            *v = (rng.next_u32() >> 8) as f32 / 16_777_216.0 * 2.0 - 1.0;
        }
        let y = core::array::from_fn(|_| (rng.next_u32() % 4) as usize);
        (x, y)
    }

    fn start() -> P {
        let mut p = P::ZEROED;
        Net::default().init(
            &mut p,
            Init::XavierUniform,
            &mut Xoshiro256PlusPlus::seed_from_u64(5),
        );
        p
    }

    /// Every scalar of `p` in f64.
    fn wide(p: &P) -> Vec<f64> {
        (0..P::TENSORS)
            .flat_map(|i| p.tensor(i).iter().map(|&v| f64::from(v)))
            .collect()
    }

    fn bits(p: &P) -> Vec<u32> {
        (0..P::TENSORS)
            .flat_map(|i| p.tensor(i).iter().map(|v| v.to_bits()))
            .collect()
    }

    /// A batch with a NaN, then normal batches: the guarded run skips it, leaving
    /// parameters and optimiser state untouched, and ends bit for bit where the run that
    /// never saw the bad batch ends.
    fn poisoned_batch_is_skipped<O: Optimizer<P> + Clone>(optimizer: O) {
        let net = Net::default();
        let (mut clean, mut guarded) = (start(), start());
        let (mut opt_clean, mut opt_guarded) = (optimizer.clone(), optimizer);
        let (mut g, mut ws) = (P::ZEROED, Workspace::<Net, 8>::ZEROED);
        let guard = StepGuard::SKIP_NON_FINITE;
        let mut skipped = 0;
        for step in 0..12u64 {
            let (mut x, y) = batch::<8>(step);
            if step != 5 {
                train_step(
                    &net,
                    &mut clean,
                    &mut g,
                    &mut ws,
                    &mut opt_clean,
                    &SoftmaxCrossEntropy,
                    &x,
                    &y,
                )
                .unwrap();
            } else {
                x[3][2] = f32::NAN;
            }
            let outcome = guarded_step(
                &mut guarded,
                &mut g,
                &mut ws,
                &mut opt_guarded,
                &x,
                &y,
                &guard,
            );
            if let StepOutcome::Skipped {
                non_finite_gradients,
                ..
            } = outcome
            {
                assert_eq!(step, 5);
                assert!(non_finite_gradients > 0);
                skipped += 1;
            }
            assert_eq!(outcome.applied(), step != 5);
            assert_eq!(bits(&clean), bits(&guarded), "after step {step}");
        }
        assert_eq!(skipped, 1);
        // Unguarded, the same NaN batch poisons every parameter for good.
        let (x, y) = batch::<8>(5);
        let mut x = x;
        x[3][2] = f32::NAN;
        let mut opt = opt_clean;
        train_step(
            &net,
            &mut clean,
            &mut g,
            &mut ws,
            &mut opt,
            &SoftmaxCrossEntropy,
            &x,
            &y,
        )
        .unwrap();
        assert!((0..P::TENSORS).any(|i| clean.tensor(i).iter().any(|v| v.is_nan())));
    }

    #[test]
    fn a_poisoned_batch_is_skipped_and_training_ends_where_it_would_have() {
        poisoned_batch_is_skipped(Sgd::new(0.1).unwrap());
        poisoned_batch_is_skipped(Momentum::<P>::new(Sgd::new(0.1).unwrap(), 0.9).unwrap());
        poisoned_batch_is_skipped(Adam::<P>::new(0.01).unwrap());
    }

    #[test]
    fn global_norm_clipping_scales_every_gradient_and_bounds_the_step() {
        let net = Net::default();
        let (x, y) = batch::<8>(1);
        let (mut g, mut ws) = (P::ZEROED, Workspace::<Net, 8>::ZEROED);
        let p0 = start();
        compute_gradients(
            &net,
            &p0,
            &mut g,
            &mut ws,
            &SoftmaxCrossEntropy,
            &x,
            &y,
            &mut NoHealth,
        )
        .unwrap();
        let full = wide(&g);
        let norm = full.iter().map(|v| v * v).sum::<f64>().sqrt();
        let limit = (norm / 4.0) as f32;
        let mut p = p0;
        let guard = StepGuard::SKIP_NON_FINITE.with_max_norm(limit).unwrap();
        let mut sgd = Sgd::new(1.0).unwrap();
        let outcome = guarded_step(&mut p, &mut g, &mut ws, &mut sgd, &x, &y, &guard);
        let StepOutcome::Applied {
            gradient_norm,
            clipped,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert!(clipped);
        assert!(
            (f64::from(gradient_norm) / norm - 1.0).abs() < 1e-5,
            "{gradient_norm} vs {norm}"
        );
        // Every gradient scaled by the same factor (1/4, within rounding): the clipped
        // gradients the optimiser used (left in `g`) have norm `limit`.
        let clipped = wide(&g);
        for (c, f) in clipped.iter().zip(&full) {
            assert!((c - f / 4.0).abs() <= 1e-6 * f.abs(), "{c} vs {f}/4");
        }
        let clipped_norm = clipped.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            (clipped_norm / f64::from(limit) - 1.0).abs() < 1e-5,
            "{clipped_norm} vs {limit}"
        );
        // And the step of lr = 1 is those gradients (up to the rounding of p − g).
        let step_norm = (0..P::TENSORS)
            .flat_map(|i| {
                p0.tensor(i)
                    .iter()
                    .zip(p.tensor(i))
                    .map(|(&a, &b)| f64::from(a) - f64::from(b))
                    .collect::<Vec<_>>()
            })
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
        assert!(
            (step_norm / f64::from(limit) - 1.0).abs() < 1e-3,
            "{step_norm} vs {limit}"
        );
        // Below the limit nothing changes: the same step as unguarded, bit for bit.
        let loose = StepGuard::SKIP_NON_FINITE
            .with_max_norm((norm * 2.0) as f32)
            .unwrap();
        let (mut a, mut b) = (p0, p0);
        train_step(
            &net,
            &mut a,
            &mut g,
            &mut ws,
            &mut sgd,
            &SoftmaxCrossEntropy,
            &x,
            &y,
        )
        .unwrap();
        let o = guarded_step(&mut b, &mut g, &mut ws, &mut sgd, &x, &y, &loose);
        assert!(matches!(o, StepOutcome::Applied { clipped: false, .. }));
        assert_eq!(bits(&a), bits(&b));
    }

    /// Gradients whose global norm exceeds f32::MAX (inputs near 3e38) are still clipped to
    /// a finite step of the requested norm.
    #[test]
    fn global_norm_clipping_works_where_the_norm_overflows() {
        type Wide = Dense<64, 10>;
        let mut p = <Wide as Layer>::Params::ZEROED;
        let mut g = <Wide as Layer>::Params::ZEROED;
        let mut ws = Workspace::<Wide, 1>::ZEROED;
        let x = [[3e38_f32; 64]];
        let guard = StepGuard::SKIP_NON_FINITE.with_max_norm(1.0).unwrap();
        let mut sgd = Sgd::new(0.5).unwrap();
        let outcome = guarded_step(&mut p, &mut g, &mut ws, &mut sgd, &x, &[3], &guard);
        let StepOutcome::Applied {
            gradient_norm,
            clipped: true,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            gradient_norm,
            f32::INFINITY,
            "the true norm exceeds f32::MAX"
        );
        let moved: f64 = p
            .weights
            .iter()
            .flatten()
            .chain(&p.bias)
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        assert!((moved / 0.5 - 1.0).abs() < 1e-5, "step norm {moved}");
    }

    #[test]
    fn value_clipping_bounds_every_entry() {
        let (x, y) = batch::<8>(2);
        let (mut g, mut ws) = (P::ZEROED, Workspace::<Net, 8>::ZEROED);
        let mut p = start();
        let guard = StepGuard::SKIP_NON_FINITE.with_max_value(1e-3).unwrap();
        let mut sgd = Sgd::new(0.1).unwrap();
        let outcome = guarded_step(&mut p, &mut g, &mut ws, &mut sgd, &x, &y, &guard);
        assert!(matches!(
            outcome,
            StepOutcome::Applied { clipped: true, .. }
        ));
        let all: Vec<f32> = (0..P::TENSORS).flat_map(|i| g.tensor(i).to_vec()).collect();
        assert!(all.iter().all(|v| v.abs() <= 1e-3));
        assert!(all.iter().any(|v| v.abs() == 1e-3));
    }

    /// Four micro-batches of 8 give the gradient of one batch of 32, bit for bit on a
    /// backend without FMA (powers of two: the 1/4 scaling is exact and samples are added
    /// in the same order), and their loss shares add up to the full batch's mean loss. With
    /// FMA the forward pass of a sample may round differently in a batch of 8 than in one of
    /// 32 (AVX2 and AVX-512 sum whole blocks of 8 or 16 samples in another order than the
    /// samples left over), within `matrix_error_bound` per product: then every gradient is
    /// within 2^-16 of its tensor's largest one.
    #[test]
    fn micro_batches_give_the_full_batch_gradient() {
        let net = Net::default();
        let p = start();
        let (x, y) = batch::<32>(9);
        let mut full = P::ZEROED;
        let mut ws32 = Workspace::<Net, 32>::ZEROED;
        let full_loss = compute_gradients(
            &net,
            &p,
            &mut full,
            &mut ws32,
            &SoftmaxCrossEntropy,
            &x,
            &y,
            &mut NoHealth,
        )
        .unwrap();
        let mut parts = P::ZEROED;
        parts.tensor_mut(0).fill(123.0); // overwritten by the first micro-batch
        let mut ws8 = Workspace::<Net, 8>::ZEROED;
        let mut part = |part: MicroBatch, xs: &[[f32; 8]; 8], ys: &[usize; 8]| {
            let loss = &SoftmaxCrossEntropy;
            accumulate_gradients(
                &net,
                &p,
                &mut parts,
                &mut ws8,
                loss,
                xs,
                ys,
                part,
                &mut NoHealth,
            )
        };
        let mut loss = 0.0;
        for index in 0..4 {
            let xs: [[f32; 8]; 8] = core::array::from_fn(|s| x[8 * index + s]);
            let ys: [usize; 8] = core::array::from_fn(|s| y[8 * index + s]);
            loss += part(MicroBatch { index, count: 4 }, &xs, &ys).unwrap();
        }
        // Bad parts are errors that change nothing.
        for bad in [
            MicroBatch { index: 0, count: 0 },
            MicroBatch { index: 4, count: 4 },
        ] {
            assert!(part(bad, &[[0.0; 8]; 8], &[0; 8]).is_err());
        }
        if gradguard::kernels::backend().fuses_multiply_add() {
            for t in 0..P::TENSORS {
                let (a, b) = (parts.tensor(t), full.tensor(t));
                let largest = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= largest / 65536.0, "tensor {t}: {x} vs {y}");
                }
            }
        } else {
            assert_eq!(bits(&parts), bits(&full));
        }
        assert!(
            (loss - full_loss).abs() <= 1e-6 * full_loss,
            "{loss} vs {full_loss}"
        );
    }
}
