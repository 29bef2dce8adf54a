//! Trains a 64-32-10 ReLU network on the UCI 8×8 digits and prints loss and accuracy per
//! epoch.
//!
//! ```text
//! cargo run --release --example digits -- [--epochs N] [--seed S] [--lr X]
//! ```

use gradguard::datasets::digits;
use gradguard::init::{shuffle, Init};
use gradguard::{training_bytes, Dense, Layer, Relu, Seq, Sgd, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::process::ExitCode;

type Net = Seq![Dense<64, 32, Relu>, Dense<32, 10>];
const BATCH: usize = 32;

struct Options {
    epochs: usize,
    seed: u64,
    learning_rate: f32,
}

/// The options, or `None` after printing the usage for `--help`.
fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        epochs: 30,
        seed: 0,
        learning_rate: 0.1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => o.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--lr" => o.learning_rate = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--help" | "-h" => {
                println!("usage: digits [--epochs N (30)] [--seed S (0)] [--lr X (0.1)]");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let net = Net::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed);
    let mut params = Box::new(<Net as Layer>::Params::ZEROED);
    let mut grads = Box::new(<Net as Layer>::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<Net, BATCH>::ZEROED);
    net.init(&mut params, Init::HeNormal, &mut rng);
    let mut sgd = match Sgd::new(options.learning_rate) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "digits: 64-32-10 ReLU, He init, SGD lr {}, batch {BATCH}, seed {}; {} train / {} test; \
         {} bytes of training memory",
        options.learning_rate,
        options.seed,
        digits::TRAIN.len(),
        digits::TEST.len(),
        training_bytes::<Net, BATCH>()
    );
    println!("epoch   loss     train    test");
    let mut order = digits::TRAIN;
    for epoch in 1..=options.epochs {
        shuffle(&mut order, &mut rng);
        let loss = match digits::train_epoch(
            &net,
            &mut params,
            &mut grads,
            &mut workspace,
            &mut sgd,
            &order,
        ) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("training failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        let train = digits::accuracy(&net, &params, &mut workspace.cache, &digits::TRAIN);
        let test = digits::accuracy(&net, &params, &mut workspace.cache, &digits::TEST);
        println!(
            "{epoch:>5}  {loss:.4}  {:>6.2}%  {:>6.2}%",
            100.0 * train,
            100.0 * test
        );
    }
    ExitCode::SUCCESS
}
