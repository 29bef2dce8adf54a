//! Trains a 64-32-10 (or 64-16-10) ReLU network on the UCI 8×8 digits and prints loss and
//! accuracy per epoch; `--save-image` writes the trained parameters as a `gradguard::image`
//! file, which a firmware loads with `include_bytes!`. The committed images were made with
//!
//! ```text
//! cargo run --release --example digits -- --epochs 20 --save-image tests/data/digits-64-32-10.ggpi
//! cargo run --release --example digits -- --hidden 16 --epochs 20 --save-image tests/data/digits-64-16-10.ggpi
//! ```
//!
//! ```text
//! cargo run --release --example digits -- [--hidden 32|16] [--epochs N] [--seed S] [--lr X] [--save-image PATH]
//! ```

use gradguard::datasets::digits;
use gradguard::image::{self, Persistent};
use gradguard::init::{shuffle, Init};
use gradguard::{training_bytes, Dense, Layer, Relu, Seq, Sgd, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::process::ExitCode;

type Net<const H: usize> = Seq![Dense<64, H, Relu>, Dense<H, 10>];
const BATCH: usize = 32;

struct Options {
    hidden: usize,
    epochs: usize,
    seed: u64,
    learning_rate: f32,
    save_image: Option<std::path::PathBuf>,
}

/// The options, or `None` after printing the usage for `--help`.
fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        hidden: 32,
        epochs: 30,
        seed: 0,
        learning_rate: 0.1,
        save_image: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--hidden" => {
                o.hidden = match value()?.as_str() {
                    "32" => 32,
                    "16" => 16,
                    other => return Err(format!("--hidden: {other} is not 32 or 16")),
                }
            }
            "--epochs" => o.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--lr" => o.learning_rate = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--save-image" => o.save_image = Some(value()?.into()),
            "--help" | "-h" => {
                println!(
                    "usage: digits [--hidden 32|16 (32)] [--epochs N (30)] [--seed S (0)] [--lr X (0.1)] \
                     [--save-image PATH]"
                );
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
    if options.hidden == 16 {
        run::<16>(options)
    } else {
        run::<32>(options)
    }
}

fn run<const H: usize>(options: Options) -> ExitCode {
    let net = Net::<H>::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed);
    let mut params = Box::new(<Net<H> as Layer>::Params::ZEROED);
    let mut grads = Box::new(<Net<H> as Layer>::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<Net<H>, BATCH>::ZEROED);
    net.init(&mut params, Init::HeNormal, &mut rng);
    let mut sgd = match Sgd::new(options.learning_rate) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "digits: 64-{H}-10 ReLU, He init, SGD lr {}, batch {BATCH}, seed {}; {} train / {} test; \
         {} bytes of training memory",
        options.learning_rate,
        options.seed,
        digits::TRAIN.len(),
        digits::TEST.len(),
        training_bytes::<Net<H>, BATCH>()
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
    if let Some(path) = options.save_image {
        let mut image = vec![0u8; <<Net<H> as Layer>::Params as Persistent>::IMAGE_BYTES];
        let written = image::save(&*params, &mut image).map(|n| image.truncate(n));
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|()| std::fs::write(&path, &image).map_err(|e| e.to_string()))
        {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        let hits = (digits::accuracy(&net, &params, &mut workspace.cache, &digits::TEST)
            * digits::TEST.len() as f32)
            .round();
        println!(
            "wrote {} ({} bytes): {hits} of {} test digits right",
            path.display(),
            image.len(),
            digits::TEST.len()
        );
    }
    ExitCode::SUCCESS
}
