// Gradient-health cases with known answers, included (with `include!`) by `tests/health.rs`
// on the host and by `firmware/tests/on_target.rs` on Cortex-M, so both check the same
// computations. Each returns `Err` with what went wrong. All state is small (on the stack).

mod health_cases {
    use gradguard::health::{GradientObserver, HealthConfig, HealthReport};
    use gradguard::init::{standard_normal, Init};
    use gradguard::{
        compute_gradients, Dense, GradMode, Layer, Relu, Seq, Sigmoid, SoftmaxCrossEntropy,
        Workspace, Zeroed,
    };
    use rand_xoshiro::rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn ensure(holds: bool, what: &'static str) -> Result<(), &'static str> {
        if holds {
            Ok(())
        } else {
            Err(what)
        }
    }

    /// Cancellation is not underflow: with identical logits and a class-balanced batch, the
    /// output layer's db = Σ (softmax − onehot)/B is exactly 0 although every term is ±1/4.
    pub fn balanced_batch_cancellation_is_not_underflow() -> Result<(), &'static str> {
        type N = Seq![Dense<4, 8, Relu>, Dense<8, 2>];
        let net = N::default();
        let mut p = <N as Layer>::Params::ZEROED;
        net.init(&mut p, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(7));
        p.second.weights = [[0.0; 8]; 2]; // every logit 0: softmax (1/2, 1/2)
        let mut g = <N as Layer>::Params::ZEROED;
        let mut ws = Workspace::<N, 2>::ZEROED;
        let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
        report.begin_backward(0.1);
        let x = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, 1.0]];
        compute_gradients(&net, &p, &mut g, &mut ws, &SoftmaxCrossEntropy, &x, &[0, 1], &mut report)
            .map_err(|_| "valid labels")?;
        ensure(g.second.bias == [0.0, 0.0], "the bias sums cancel exactly")?;
        let output = report.layer(1).ok_or("the output layer is recorded")?;
        ensure(output.pre_activation_grad.counts.normal == 4, "every term is ±1/4")?;
        ensure(output.bias_grad.counts.zero == 2, "db is two zeros")?;
        ensure(output.underflow_count() == 0, "no underflow in the output layer")?;
        ensure(report.flags().underflow.is_none(), "no Underflow flag")
    }

    /// A layer whose ReLU units are all dead: DeadUnits there, structural zeros below, and
    /// no Underflow anywhere (zero inputs and zero upstream gradients are structural).
    pub fn all_dead_relu_layer_raises_no_underflow() -> Result<(), &'static str> {
        type N = Seq![Dense<4, 3, Relu>, Dense<3, 4, Sigmoid>, Dense<4, 2>];
        let net = N::default();
        let mut p = <N as Layer>::Params::ZEROED;
        net.init(&mut p, Init::HeNormal, &mut Xoshiro256PlusPlus::seed_from_u64(8));
        p.first.bias = [-100.0; 3];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let mut x = [[0.0f32; 4]; 8];
        x.iter_mut()
            .flatten()
            .for_each(|v| *v = standard_normal(&mut rng));
        let mut g = <N as Layer>::Params::ZEROED;
        let mut ws = Workspace::<N, 8>::ZEROED;
        let mut report = HealthReport::<3>::new(HealthConfig::DEFAULT);
        report.begin_backward(0.1);
        let y = [0, 1, 0, 1, 0, 1, 0, 1];
        compute_gradients(&net, &p, &mut g, &mut ws, &SoftmaxCrossEntropy, &x, &y, &mut report)
            .map_err(|_| "valid labels")?;
        let first = report.layer(0).ok_or("layer 0 is recorded")?;
        ensure(first.dead_units == 3, "three dead units")?;
        ensure(report.flags().dead_units == Some(0), "DeadUnits at layer 0")?;
        ensure(report.flags().underflow.is_none(), "no Underflow flag")?;
        ensure(first.pre_activation_structural_zeros == 24, "24 structural zeros")?;
        let zero_inputs = g.second.first.weights.iter().flatten().all(|&v| v == 0.0);
        ensure(zero_inputs, "zero inputs give zero dW")
    }

    /// A product that truly underflows is flagged at the layer that forms it, in dW (dz·x)
    /// and in dX (dz·w); a tiny product that is exact is not an underflow.
    pub fn true_product_underflow_is_flagged_at_its_layer() -> Result<(), &'static str> {
        type N = Seq![Dense<2, 2>, Dense<2, 1>];
        let net = N::default();
        let run = |output_weight: f32, x: [f32; 2], first_weight: f32| {
            let mut p = <N as Layer>::Params::ZEROED;
            p.first.weights = [[first_weight, 1.0], [1.0, 1.0]];
            p.second.weights = [[output_weight, output_weight]];
            let mut cache = <N as Layer>::Cache::<1>::ZEROED;
            net.forward(&p, &[x], &mut cache);
            let mut g = <N as Layer>::Params::ZEROED;
            let mut dx = [[0.0f32; 2]];
            let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
            net.backward_observed(
                &p,
                &[x],
                &mut cache,
                &[[1.0]],
                &mut g,
                Some(&mut dx),
                GradMode::Overwrite,
                &mut report,
            );
            report
        };
        // dz₀ = 1e-30 (normal); dz₀·x = 1e-40 (subnormal, inexact) in dW₀; dz₀·w = 1e-50
        // rounds to 0 in dX₀.
        let report = run(1e-30, [1e-10, 1.0], 1e-20);
        let first = report.layer(0).ok_or("layer 0 is recorded")?;
        let output = report.layer(1).ok_or("layer 1 is recorded")?;
        ensure(report.flags().underflow == Some(0), "Underflow at layer 0")?;
        ensure(output.underflow_count() == 0, "nothing underflows in layer 1")?;
        ensure(first.weight_products_became_subnormal == 2, "two dz·x became subnormal")?;
        ensure(first.weight_products_became_zero == 0, "no dz·x became zero")?;
        ensure(first.input_products_became_zero == 1, "one dz·w became zero")?;
        ensure(first.input_products_became_subnormal == 0, "no dz·w became subnormal")?;
        // dz₀ = 2^-100 and x = 2^-40: the product 2^-140 is subnormal but exact.
        let exact = run(f32::from_bits(0x0d80_0000), [f32::from_bits(0x2b80_0000), 1.0], 1.0);
        let first = exact.layer(0).ok_or("layer 0 is recorded")?;
        ensure(first.underflow_count() == 0, "an exact subnormal product is no underflow")?;
        ensure(exact.flags().underflow.is_none(), "no Underflow flag for exact products")
    }

    /// A case: `Err` says what went wrong.
    pub type Case = fn() -> Result<(), &'static str>;

    /// Every case, by name.
    pub const ALL: [(&str, Case); 3] = [
        (
            "balanced_batch_cancellation_is_not_underflow",
            balanced_batch_cancellation_is_not_underflow,
        ),
        (
            "all_dead_relu_layer_raises_no_underflow",
            all_dead_relu_layer_raises_no_underflow,
        ),
        (
            "true_product_underflow_is_flagged_at_its_layer",
            true_product_underflow_is_flagged_at_its_layer,
        ),
    ];
}
