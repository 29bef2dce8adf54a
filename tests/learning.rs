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
