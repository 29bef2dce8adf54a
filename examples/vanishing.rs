//! The vanishing-gradient study: MLPs of depth 10 (64→32×9→10) and 3 (64→32→10) with
//! sigmoid, tanh, ReLU and leaky ReLU (α = 0.01, 0.2), initialised N(0, 1), Xavier or He,
//! trained with plain SGD on the UCI digits (stratified split). For each configuration it
//! prints the per-layer gradient norm at initialisation and after training (from the health
//! reports), the flags, train and test accuracy per epoch and a verdict, then writes SVG
//! plots.
//!
//! ```text
//! cargo run --release --example vanishing -- [--epochs 30] [--seed 0] [--lr 0.1]
//!     [--configs all|NAME,...] [--out target/vanishing] [--help]
//! ```
//! NAME is e.g. `10-sigmoid-xavier` or `3-leaky0.2-normal`; a part such as `sigmoid` or `10-`
//! selects every configuration containing it.

use gradguard::datasets::digits;
use gradguard::health::{Flags, HealthConfig, HealthReport};
use gradguard::init::{shuffle, Init};
use gradguard::{
    math, Activation, Chain, Dense, Elementwise, Identity, Layer, LeakyRelu, Relu, Seq, Sgd,
    Sigmoid, Tanh, Workspace, Zeroed,
};
use plotters::prelude::*;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const BATCH: usize = 32;

type Ten<A> = Seq![
    Dense<64, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 32, A>,
    Dense<32, 10>
];
type Three<A> = Seq![Dense<64, 32, A>, Dense<32, 10>];

/// A sequence value: `chain!(a, b, c)` is `Chain::new(a, Chain::new(b, c))`.
macro_rules! chain {
    ($last:expr) => { $last };
    ($first:expr, $($rest:expr),+) => { Chain::new($first, chain!($($rest),+)) };
}

fn ten<A: Activation>(a: A) -> Ten<A> {
    let d = Dense::new(a);
    chain!(
        d,
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(a),
        Dense::new(Identity)
    )
}

fn three<A: Activation>(a: A) -> Three<A> {
    chain!(Dense::new(a), Dense::new(Identity))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Sigmoid,
    Tanh,
    Relu,
    Leaky(f32),
}

impl Act {
    fn name(self) -> String {
        match self {
            Act::Sigmoid => "sigmoid".into(),
            Act::Tanh => "tanh".into(),
            Act::Relu => "relu".into(),
            Act::Leaky(a) => format!("leaky{a}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    depth: usize,
    act: Act,
    init: Init,
}

fn init_name(init: Init) -> &'static str {
    match init {
        Init::StandardNormal => "normal",
        Init::XavierNormal | Init::XavierUniform => "xavier",
        Init::HeNormal | Init::HeUniform => "he",
        Init::Zeros => "zeros",
    }
}

impl Config {
    fn name(&self) -> String {
        format!(
            "{}-{}-{}",
            self.depth,
            self.act.name(),
            init_name(self.init)
        )
    }

    fn all() -> Vec<Config> {
        let mut out = Vec::new();
        for depth in [10, 3] {
            for act in [
                Act::Sigmoid,
                Act::Tanh,
                Act::Relu,
                Act::Leaky(0.01),
                Act::Leaky(0.2),
            ] {
                for init in [Init::StandardNormal, Init::XavierNormal, Init::HeNormal] {
                    out.push(Config { depth, act, init });
                }
            }
        }
        out
    }
}

struct Options {
    epochs: usize,
    seed: u64,
    learning_rate: f32,
    configs: Vec<String>,
    out: PathBuf,
}

/// The options, or `None` after printing the usage for `--help`.
fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        epochs: 30,
        seed: 0,
        learning_rate: 0.1,
        configs: vec!["all".into()],
        out: PathBuf::from("target/vanishing"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => o.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--lr" => o.learning_rate = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--configs" => o.configs = value()?.split(',').map(str::to_owned).collect(),
            "--out" => o.out = PathBuf::from(value()?),
            "--help" | "-h" => {
                let names: Vec<String> = Config::all().iter().map(Config::name).collect();
                println!(
                    "usage: vanishing [--epochs N (30)] [--seed S (0)] [--lr X (0.1)] \
                     [--configs all|NAME,... (all)] [--out DIR (target/vanishing)]\n\
                     NAME (or any part of it): {}",
                    names.join(" ")
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    Ok(Some(o))
}

/// What one configuration produced.
struct Outcome {
    name: String,
    config: Config,
    /// ‖dW‖ per layer, input layer first, on the first batch at initialisation / after training.
    init_norms: Vec<f32>,
    /// Share of zero or subnormal dW entries per layer (input first), after training.
    final_zero_share: Vec<f32>,
    init_flags: Flags,
    final_flags: Flags,
    test_accuracy: Vec<f32>,
    train_accuracy: Vec<f32>,
    /// Per-layer factor of the geometric fit of ‖dW‖ over depth, at initialisation.
    factor: Option<f32>,
}

fn norms(report: &HealthReport<10>) -> (Vec<f32>, Vec<f32>) {
    let layers = report.layers_from_output().iter().rev();
    layers
        .map(|l| {
            let c = l.weight_grad.counts;
            let share = (c.zero + c.subnormal) as f32 / l.weight_grad.len().max(1) as f32;
            (l.weight_grad.l2_norm(), share)
        })
        .unzip()
}

fn factor_text(factor: Option<f32>) -> String {
    factor.map_or("-".into(), |f| format!("{f:.2}"))
}

fn flag_text(f: &Flags) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<u16>| {
        if let Some(layer) = v {
            parts.push(format!("{name}(layer {layer})"));
        }
    };
    add("Underflow", f.underflow);
    add("Vanishing", f.vanishing);
    add("Exploding", f.exploding);
    add("DeadUnits", f.dead_units);
    add("Saturated", f.saturated);
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn fmt_norms(norms: &[f32]) -> String {
    norms
        .iter()
        .map(|n| format!("{n:.1e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run<L>(net: &L, config: Config, o: &Options) -> Result<Outcome, gradguard::Error>
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]>,
{
    let name = config.name();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(o.seed);
    let mut params = Box::new(L::Params::ZEROED);
    let mut grads = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, BATCH>::ZEROED);
    net.init(&mut params, config.init, &mut rng);
    let mut report = Box::new(HealthReport::<10>::new(HealthConfig::DEFAULT));
    digits::gradient_health(
        net,
        &params,
        &mut grads,
        &mut workspace,
        &digits::TRAIN,
        &mut *report,
    )?;
    let (init_norms, _) = norms(&report);
    let init_flags = report.flags();
    let factor = report.fitted_decay_factor();
    println!("\n== {name}");
    println!(
        "   init  ‖dW‖ per layer (input→output): {}",
        fmt_norms(&init_norms)
    );
    println!("   init  flags: {}", flag_text(&init_flags));
    let mut sgd = Sgd::new(o.learning_rate)?;
    let mut order = digits::TRAIN;
    let (mut train_accuracy, mut test_accuracy) = (Vec::new(), Vec::new());
    for epoch in 1..=o.epochs {
        shuffle(&mut order, &mut rng);
        let loss = digits::train_epoch(
            net,
            &mut params,
            &mut grads,
            &mut workspace,
            &mut sgd,
            &order,
        )?;
        let train = digits::accuracy(net, &params, &mut workspace.cache, &digits::TRAIN);
        let test = digits::accuracy(net, &params, &mut workspace.cache, &digits::TEST);
        println!(
            "   epoch {epoch:>3}  loss {loss:>8.4}  train {:>6.2}%  test {:>6.2}%",
            100.0 * train,
            100.0 * test
        );
        train_accuracy.push(train);
        test_accuracy.push(test);
    }
    digits::gradient_health(
        net,
        &params,
        &mut grads,
        &mut workspace,
        &digits::TRAIN,
        &mut *report,
    )?;
    let (final_norms, final_zero_share) = norms(&report);
    let final_flags = report.flags();
    println!(
        "   final ‖dW‖ per layer (input→output): {}",
        fmt_norms(&final_norms)
    );
    println!("   final flags: {}", flag_text(&final_flags));
    let ratio = init_norms.first().copied().unwrap_or(f32::NAN)
        / init_norms.last().copied().unwrap_or(f32::NAN);
    let kind = if init_flags.vanishing.is_some() {
        "vanishing"
    } else if init_flags.underflow.is_some() {
        "underflow"
    } else if init_flags.exploding.is_some() {
        "exploding"
    } else {
        "healthy"
    };
    println!(
        "   verdict: {kind}: ‖dW₁‖/‖dW_out‖ = {ratio:.1e} at init, per-layer factor {}, \
         final test accuracy {:.1}%",
        factor_text(factor),
        100.0 * test_accuracy.last().copied().unwrap_or(0.0)
    );
    Ok(Outcome {
        name,
        config,
        init_norms,
        final_zero_share,
        init_flags,
        final_flags,
        test_accuracy,
        train_accuracy,
        factor,
    })
}

fn run_config(config: Config, o: &Options) -> Result<Outcome, gradguard::Error> {
    match (config.depth, config.act) {
        (10, Act::Sigmoid) => run(&ten(Sigmoid), config, o),
        (10, Act::Tanh) => run(&ten(Tanh), config, o),
        (10, Act::Relu) => run(&ten(Relu), config, o),
        (10, Act::Leaky(a)) => run(&ten(LeakyRelu::new(a)), config, o),
        (_, Act::Sigmoid) => run(&three(Sigmoid), config, o),
        (_, Act::Tanh) => run(&three(Tanh), config, o),
        (_, Act::Relu) => run(&three(Relu), config, o),
        (_, Act::Leaky(a)) => run(&three(LeakyRelu::new(a)), config, o),
    }
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// A named function to plot.
type Curve = (&'static str, Box<dyn Fn(f32) -> f32>);

fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// A line chart with a legend: one `(name, points)` per series.
struct LineChart<'a> {
    caption: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x: std::ops::Range<f32>,
    y: std::ops::Range<f32>,
    legend: SeriesLabelPosition,
}

impl LineChart<'_> {
    fn draw(
        self,
        path: &Path,
        series: &[(String, Vec<(f32, f32)>)],
        reference: Option<(&str, f32)>,
    ) -> PlotResult {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(self.x.clone(), self.y.clone())?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color(i).stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color(i).stroke_width(2))
                });
        }
        if let Some((name, level)) = reference {
            chart
                .draw_series(LineSeries::new(
                    [(self.x.start, level), (self.x.end, level)],
                    BLACK.stroke_width(1),
                ))?
                .label(name)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(self.legend)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// Points `(layer or epoch, value)` numbered from 1.
fn numbered(values: &[f32], f: impl Fn(f32) -> f32) -> Vec<(f32, f32)> {
    values
        .iter()
        .enumerate()
        .map(|(k, &v)| ((k + 1) as f32, f(v)))
        .collect()
}

fn write_plots(outcomes: &[Outcome], dir: &Path) -> PlotResult {
    std::fs::create_dir_all(dir)?;
    let deep: Vec<&Outcome> = outcomes.iter().filter(|o| o.config.depth == 10).collect();
    // One line per activation/init would be 15; show the ones that tell the story.
    let pick = |names: &[&str]| -> Vec<&Outcome> {
        outcomes
            .iter()
            .filter(|o| names.contains(&o.name.as_str()))
            .collect()
    };
    let story = pick(&[
        "10-sigmoid-xavier",
        "10-sigmoid-normal",
        "10-sigmoid-he",
        "10-tanh-xavier",
        "10-relu-he",
        "10-relu-normal",
        "10-leaky0.01-he",
        "10-leaky0.2-he",
        "3-sigmoid-xavier",
        "3-relu-he",
    ]);
    let story = if story.is_empty() {
        outcomes.iter().collect()
    } else {
        story
    };
    let deep = if deep.is_empty() {
        outcomes.iter().collect()
    } else {
        deep
    };
    let files = [
        (
            "gradient_norms.svg",
            "per-layer gradient norm at initialisation",
        ),
        ("accuracy.svg", "test accuracy per epoch"),
        ("activations.svg", "activations and derivatives"),
        (
            "zero_share.svg",
            "share of zero/subnormal dW entries per layer",
        ),
    ];
    // (a) log10 ‖dW‖ per layer at initialisation, one line per 10-layer configuration.
    let norms: Vec<(String, Vec<(f32, f32)>)> = deep
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                numbered(&o.init_norms, |n| n.max(1e-30).log10()),
            )
        })
        .collect();
    let lowest = norms
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.0f32, f32::min);
    LineChart {
        caption: "log10 ‖dW‖ per layer at initialisation (10-layer nets, first batch)",
        x_desc: "layer (1 = input side)",
        y_desc: "log10 ‖dW‖",
        x: 1.0..10.0,
        y: (lowest.floor() - 0.5)..1.0,
        legend: SeriesLabelPosition::LowerRight,
    }
    .draw(&dir.join(files[0].0), &norms, None)?;
    // (b) Test accuracy per epoch.
    let accuracy: Vec<(String, Vec<(f32, f32)>)> = story
        .iter()
        .map(|o| (o.name.clone(), numbered(&o.test_accuracy, |a| 100.0 * a)))
        .collect();
    let epochs = story
        .iter()
        .map(|o| o.test_accuracy.len())
        .max()
        .unwrap_or(1)
        .max(2);
    LineChart {
        caption: "Test accuracy per epoch (digits, stratified split)",
        x_desc: "epoch",
        y_desc: "test accuracy (%)",
        x: 1.0..epochs as f32,
        y: 0.0..100.0,
        legend: SeriesLabelPosition::LowerRight,
    }
    .draw(&dir.join(files[1].0), &accuracy, None)?;
    // (c) The activations and their derivatives, with σ' ≤ 1/4 marked.
    let xs: Vec<f32> = (0..=600).map(|k| -6.0 + k as f32 * 0.02).collect();
    let leaky = LeakyRelu::new(0.2);
    let curves: [Curve; 6] = [
        ("σ", Box::new(math::sigmoid)),
        ("σ'", Box::new(math::sigmoid_derivative)),
        ("tanh", Box::new(math::tanh)),
        ("tanh'", Box::new(math::tanh_derivative)),
        ("ReLU'", Box::new(|x| Relu.derivative(x))),
        ("leaky' (α = 0.2)", Box::new(move |x| leaky.derivative(x))),
    ];
    let curves: Vec<(String, Vec<(f32, f32)>)> = curves
        .iter()
        .map(|(name, f)| (name.to_string(), xs.iter().map(|&x| (x, f(x))).collect()))
        .collect();
    LineChart {
        caption: "Activations and derivatives (from the crate's own functions)",
        x_desc: "x",
        y_desc: "",
        x: -6.0..6.0,
        y: -1.1..1.1,
        legend: SeriesLabelPosition::UpperLeft,
    }
    .draw(
        &dir.join(files[2].0),
        &curves,
        Some(("1/4: the largest σ' can be", 0.25)),
    )?;
    // (d) Share of zero or subnormal dW entries per layer after training.
    let shares: Vec<(String, Vec<(f32, f32)>)> = story
        .iter()
        .map(|o| (o.name.clone(), numbered(&o.final_zero_share, |s| 100.0 * s)))
        .collect();
    LineChart {
        caption: "Share of zero or subnormal dW entries per layer, after training",
        x_desc: "layer (1 = input side)",
        y_desc: "% of dW entries",
        x: 1.0..10.0,
        y: 0.0..100.0,
        legend: SeriesLabelPosition::UpperRight,
    }
    .draw(&dir.join(files[3].0), &shares, None)?;
    for (file, what) in files {
        println!("wrote {} ({what})", dir.join(file).display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let selected: Vec<Config> = Config::all()
        .into_iter()
        .filter(|c| {
            o.configs
                .iter()
                .any(|s| s == "all" || c.name().contains(s.as_str()))
        })
        .collect();
    if selected.is_empty() {
        eprintln!("no configuration matches {:?}; try --help", o.configs);
        return ExitCode::FAILURE;
    }
    println!(
        "vanishing-gradient study: {} configurations, {} epochs, SGD lr {}, batch {BATCH}, seed {}",
        selected.len(),
        o.epochs,
        o.learning_rate,
        o.seed
    );
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for (k, config) in selected.iter().enumerate() {
        print!("[{}/{}]", k + 1, selected.len());
        match run_config(*config, &o) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                eprintln!("{}: {e}", config.name());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("\n== summary ({:.1} s)", start.elapsed().as_secs_f32());
    println!(
        "{:<20} {:>12} {:>8} {:>9} {:>9}  flags at init / after training",
        "configuration", "‖dW₁‖/‖dWₒ‖", "factor", "train %", "test %"
    );
    for o in &outcomes {
        let ratio = o.init_norms.first().copied().unwrap_or(f32::NAN)
            / o.init_norms.last().copied().unwrap_or(f32::NAN);
        println!(
            "{:<20} {:>12.1e} {:>8} {:>9.1} {:>9.1}  {} / {}",
            o.name,
            ratio,
            factor_text(o.factor),
            100.0 * o.train_accuracy.last().copied().unwrap_or(0.0),
            100.0 * o.test_accuracy.last().copied().unwrap_or(0.0),
            flag_text(&o.init_flags),
            flag_text(&o.final_flags)
        );
    }
    if let Err(e) = write_plots(&outcomes, &o.out) {
        eprintln!("plots failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
