//! The vanishing-gradient study: MLPs of depth 10 (64→32×9→10) and 3 (64→32→10) with
//! sigmoid, tanh, ReLU and leaky ReLU (α = 0.01, 0.2), initialised N(0, 1), Xavier or He,
//! trained with plain SGD on the UCI digits (stratified split), each over several seeds;
//! then the remedies: the failing 10-layer nets again with a batch norm after every hidden
//! dense layer (`-bn`). For each configuration it prints the per-layer gradient norm at
//! initialisation and after training (from the health reports), the flags, train and test
//! accuracy per epoch (first seed) and the median and range over the seeds, then a summary
//! table and SVG plots.
//!
//! ```text
//! cargo run --release --example vanishing -- [--epochs 30] [--seed 0] [--seeds 5]
//!     [--lr 0.1] [--configs all|NAME,...] [--threads N] [--out target/vanishing] [--help]
//! ```
//! NAME is e.g. `10-sigmoid-xavier`, `10-sigmoid-xavier-bn` or `3-leaky0.2-normal`; a part
//! such as `sigmoid` or `10-` selects every configuration containing it. Seeds are `--seed`,
//! `--seed`+1, …; the runs are spread over `--threads` threads (default: every core).

use gradguard::datasets::digits;
use gradguard::health::{Flags, HealthConfig, HealthReport, LayerKind};
use gradguard::init::{shuffle, Init};
use gradguard::{
    math, Activation, BatchNorm, Chain, Dense, Elementwise, Identity, Layer, LeakyRelu, Relu, Seq,
    Sgd, Sigmoid, Tanh, Workspace, Zeroed,
};
use plotters::prelude::*;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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
/// The remedy: a batch norm (with the activation fused into it) after every hidden layer.
type TenNormalized<A> = Seq![
    Dense<64, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 32>, BatchNorm<32, A>,
    Dense<32, 10>
];
/// Records in a report: 10 dense layers and 9 batch norms at most.
const RECORDS: usize = 19;

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

fn ten_normalized<A: Activation>(a: A) -> TenNormalized<A> {
    let (d, n) = (Dense::new(Identity), BatchNorm::new(a));
    chain!(
        Dense::new(Identity),
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        d,
        n,
        Dense::new(Identity)
    )
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

#[derive(Clone, Copy, Debug, PartialEq)]
struct Config {
    depth: usize,
    act: Act,
    init: Init,
    /// A batch norm after every hidden dense layer.
    batch_norm: bool,
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
            "{}-{}-{}{}",
            self.depth,
            self.act.name(),
            init_name(self.init),
            if self.batch_norm { "-bn" } else { "" }
        )
    }

    /// The configuration without its remedy.
    fn untreated(self) -> Config {
        Config {
            batch_norm: false,
            ..self
        }
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
                    out.push(Config {
                        depth,
                        act,
                        init,
                        batch_norm: false,
                    });
                }
            }
        }
        // The remedies: the three failures of the article, with batch norms.
        for (act, init) in [
            (Act::Sigmoid, Init::XavierNormal),
            (Act::Relu, Init::StandardNormal),
            (Act::Tanh, Init::StandardNormal),
        ] {
            out.push(Config {
                depth: 10,
                act,
                init,
                batch_norm: true,
            });
        }
        out
    }
}

struct Options {
    epochs: usize,
    seed: u64,
    seeds: usize,
    learning_rate: f32,
    configs: Vec<String>,
    threads: usize,
    out: PathBuf,
}

/// The options, or `None` after printing the usage for `--help`.
fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        epochs: 30,
        seed: 0,
        seeds: 5,
        learning_rate: 0.1,
        configs: vec!["all".into()],
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: PathBuf::from("target/vanishing"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => o.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--seeds" => o.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--threads" => {
                o.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?;
            }
            "--lr" => o.learning_rate = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--configs" => o.configs = value()?.split(',').map(str::to_owned).collect(),
            "--out" => o.out = PathBuf::from(value()?),
            "--help" | "-h" => {
                let names: Vec<String> = Config::all().iter().map(Config::name).collect();
                println!(
                    "usage: vanishing [--epochs N (30)] [--seed S (0)] [--seeds K (5)] \
                     [--lr X (0.1)] [--configs all|NAME,... (all)] [--threads T (cores)] \
                     [--out DIR (target/vanishing)]\n\
                     NAME (or any part of it): {}",
                    names.join(" ")
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    if o.seeds == 0 || o.threads == 0 {
        return Err("--seeds and --threads must be at least 1".into());
    }
    Ok(Some(o))
}

/// What one configuration produced with one seed.
struct Outcome {
    name: String,
    config: Config,
    /// The detailed lines (per-layer norms, flags, epochs, verdict).
    log: String,
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

/// ‖dW‖ and the share of zero or subnormal dW entries of the dense layers, input first.
fn norms(report: &HealthReport<RECORDS>) -> (Vec<f32>, Vec<f32>) {
    let all = report.layers_from_output().iter().rev();
    let layers = all.filter(|l| l.kind == LayerKind::Dense);
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

fn run<L>(net: &L, config: Config, seed: u64, o: &Options) -> Result<Outcome, gradguard::Error>
where
    L: Layer<Input = [f32; 64], Output = [f32; 10]>,
{
    let name = config.name();
    let mut log = String::new();
    // Lines for the log (a String: the runs are in parallel, printed in order afterwards).
    macro_rules! say {
        ($($t:tt)*) => { let _ = writeln!(log, $($t)*); };
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut params = Box::new(L::Params::ZEROED);
    let mut grads = Box::new(L::Params::ZEROED);
    let mut workspace = Box::new(Workspace::<L, BATCH>::ZEROED);
    net.init(&mut params, config.init, &mut rng);
    let mut report = Box::new(HealthReport::<RECORDS>::new(HealthConfig::DEFAULT));
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
    say!("\n== {name} (seed {seed})");
    say!(
        "   init  ‖dW‖ per layer (input→output): {}",
        fmt_norms(&init_norms)
    );
    say!("   init  flags: {}", flag_text(&init_flags));
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
        say!(
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
    say!(
        "   final ‖dW‖ per layer (input→output): {}",
        fmt_norms(&final_norms)
    );
    say!("   final flags: {}", flag_text(&final_flags));
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
    say!(
        "   verdict: {kind}: ‖dW₁‖/‖dW_out‖ = {ratio:.1e} at init, per-layer factor {}, \
         final test accuracy {:.1}%",
        factor_text(factor),
        100.0 * test_accuracy.last().copied().unwrap_or(0.0)
    );
    Ok(Outcome {
        name,
        config,
        log,
        init_norms,
        final_zero_share,
        init_flags,
        final_flags,
        test_accuracy,
        train_accuracy,
        factor,
    })
}

fn run_config(config: Config, seed: u64, o: &Options) -> Result<Outcome, gradguard::Error> {
    match (config.depth, config.batch_norm, config.act) {
        (10, true, Act::Sigmoid) => run(&ten_normalized(Sigmoid), config, seed, o),
        (10, true, Act::Tanh) => run(&ten_normalized(Tanh), config, seed, o),
        (10, true, Act::Relu) => run(&ten_normalized(Relu), config, seed, o),
        (10, true, Act::Leaky(a)) => run(&ten_normalized(LeakyRelu::new(a)), config, seed, o),
        (10, false, Act::Sigmoid) => run(&ten(Sigmoid), config, seed, o),
        (10, false, Act::Tanh) => run(&ten(Tanh), config, seed, o),
        (10, false, Act::Relu) => run(&ten(Relu), config, seed, o),
        (10, false, Act::Leaky(a)) => run(&ten(LeakyRelu::new(a)), config, seed, o),
        (_, _, Act::Sigmoid) => run(&three(Sigmoid), config, seed, o),
        (_, _, Act::Tanh) => run(&three(Tanh), config, seed, o),
        (_, _, Act::Relu) => run(&three(Relu), config, seed, o),
        (_, _, Act::Leaky(a)) => run(&three(LeakyRelu::new(a)), config, seed, o),
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
fn median(values: &[f32]) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let n = v.len();
    match n {
        0 => f32::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One configuration over every seed: the first seed's outcome and the spread.
struct Summary<'a> {
    first: &'a Outcome,
    runs: Vec<&'a Outcome>,
}

impl Summary<'_> {
    fn final_accuracies(&self, test: bool) -> Vec<f32> {
        self.runs
            .iter()
            .map(|o| {
                let a = if test {
                    &o.test_accuracy
                } else {
                    &o.train_accuracy
                };
                100.0 * a.last().copied().unwrap_or(0.0)
            })
            .collect()
    }

    /// "median [min–max]" of the final test accuracy.
    fn test_text(&self) -> String {
        let a = self.final_accuracies(true);
        let (lo, hi) = a
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        if a.len() == 1 {
            format!("{:.1}", median(&a))
        } else {
            format!("{:.1} [{lo:.1}–{hi:.1}]", median(&a))
        }
    }

    /// Test accuracy per epoch, the median over the seeds.
    fn median_curve(&self) -> Vec<f32> {
        let epochs = self.first.test_accuracy.len();
        (0..epochs)
            .map(|e| {
                let at: Vec<f32> = self
                    .runs
                    .iter()
                    .filter_map(|o| o.test_accuracy.get(e).copied())
                    .collect();
                median(&at)
            })
            .collect()
    }

    /// In how many runs `flag` was raised at initialisation.
    fn flagged(&self, flag: impl Fn(&Flags) -> bool) -> usize {
        self.runs.iter().filter(|o| flag(&o.init_flags)).count()
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

fn write_plots(summaries: &[Summary<'_>], dir: &Path) -> PlotResult {
    std::fs::create_dir_all(dir)?;
    let untreated: Vec<&Summary<'_>> = summaries
        .iter()
        .filter(|s| !s.first.config.batch_norm)
        .collect();
    let deep: Vec<&Outcome> = untreated
        .iter()
        .map(|s| s.first)
        .filter(|o| o.config.depth == 10)
        .collect();
    // One line per activation/init would be 15; show the ones that tell the story.
    let pick = |names: &[&str]| -> Vec<&Summary<'_>> {
        untreated
            .iter()
            .copied()
            .filter(|s| names.contains(&s.first.name.as_str()))
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
        summaries.iter().collect()
    } else {
        story
    };
    let deep = if deep.is_empty() {
        summaries.iter().map(|s| s.first).collect()
    } else {
        deep
    };
    // The failure/cure pairs: each remedy next to the configuration it treats.
    let pairs: Vec<(&Summary<'_>, &Summary<'_>)> = summaries
        .iter()
        .filter(|s| s.first.config.batch_norm)
        .filter_map(|cure| {
            let sick = cure.first.config.untreated();
            summaries
                .iter()
                .find(|s| s.first.config == sick)
                .map(|s| (s, cure))
        })
        .collect();
    let files = [
        (
            "gradient_norms.svg",
            "per-layer gradient norm at initialisation",
        ),
        (
            "accuracy.svg",
            "test accuracy per epoch, median over the seeds",
        ),
        ("activations.svg", "activations and derivatives"),
        (
            "zero_share.svg",
            "share of zero/subnormal dW entries per layer",
        ),
        (
            "remedies_gradient_norms.svg",
            "per-layer gradient norm at initialisation, with and without batch norm",
        ),
        (
            "remedies_accuracy.svg",
            "test accuracy per epoch of each failure and its cure",
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
        .map(|s| {
            (
                s.first.name.clone(),
                numbered(&s.median_curve(), |a| 100.0 * a),
            )
        })
        .collect();
    let epochs = story
        .iter()
        .map(|s| s.first.test_accuracy.len())
        .max()
        .unwrap_or(1)
        .max(2);
    LineChart {
        caption: "Test accuracy per epoch, median over the seeds (digits, stratified split)",
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
        .map(|s| {
            let o = s.first;
            (o.name.clone(), numbered(&o.final_zero_share, |v| 100.0 * v))
        })
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
    // (e) ‖dW‖ per dense layer at initialisation, each failure and its cure.
    let norms: Vec<(String, Vec<(f32, f32)>)> = pairs
        .iter()
        .flat_map(|(sick, cure)| [sick.first, cure.first])
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
    let highest = norms
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .filter(|y| y.is_finite())
        .fold(0.0f32, f32::max);
    LineChart {
        caption: "log10 ‖dW‖ per dense layer at initialisation, without and with batch norm",
        x_desc: "dense layer (1 = input side)",
        y_desc: "log10 ‖dW‖",
        x: 1.0..10.0,
        y: (lowest.floor() - 0.5)..(highest.ceil() + 0.5),
        legend: SeriesLabelPosition::LowerRight,
    }
    .draw(&dir.join(files[4].0), &norms, None)?;
    // (f) Test accuracy per epoch (median over the seeds) of each failure and its cure.
    let accuracy: Vec<(String, Vec<(f32, f32)>)> = pairs
        .iter()
        .flat_map(|&(sick, cure)| [sick, cure])
        .map(|s| {
            (
                s.first.name.clone(),
                numbered(&s.median_curve(), |a| 100.0 * a),
            )
        })
        .collect();
    LineChart {
        caption: "Test accuracy per epoch, median over the seeds: failures and cures",
        x_desc: "epoch",
        y_desc: "test accuracy (%)",
        x: 1.0..epochs as f32,
        y: 0.0..100.0,
        legend: SeriesLabelPosition::LowerRight,
    }
    .draw(&dir.join(files[5].0), &accuracy, None)?;
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
    let seeds: Vec<u64> = (0..o.seeds as u64).map(|k| o.seed + k).collect();
    println!(
        "vanishing-gradient study: {} configurations × {} seeds ({}..={}), {} epochs, \
         SGD lr {}, batch {BATCH}, kernels: {} backend, {} threads",
        selected.len(),
        seeds.len(),
        o.seed,
        seeds.last().copied().unwrap_or(o.seed),
        o.epochs,
        o.learning_rate,
        gradguard::kernels::backend().name(),
        o.threads
    );
    let start = Instant::now();
    // Every (configuration, seed) is a job; the threads take the next one until none is left.
    let jobs: Vec<(Config, u64)> = selected
        .iter()
        .flat_map(|&c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let results: Vec<Mutex<Option<Result<Outcome, gradguard::Error>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..o.threads.min(jobs.len()) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(config, seed)) = jobs.get(k) else {
                    break;
                };
                let outcome = run_config(config, seed, &o);
                if let Some(slot) = results.get(k) {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                }
            });
        }
    });
    let mut outcomes = Vec::new();
    for (slot, (config, seed)) in results.into_iter().zip(&jobs) {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(outcome)) => outcomes.push(outcome),
            Some(Err(e)) => {
                eprintln!("{} (seed {seed}): {e}", config.name());
                return ExitCode::FAILURE;
            }
            None => {
                eprintln!("{} (seed {seed}): not run", config.name());
                return ExitCode::FAILURE;
            }
        }
    }
    let summaries: Vec<Summary<'_>> = outcomes
        .chunks(seeds.len())
        .filter_map(|runs| {
            Some(Summary {
                first: runs.first()?,
                runs: runs.iter().collect(),
            })
        })
        .collect();
    for s in &summaries {
        print!("{}", s.first.log);
        println!(
            "   over seeds {}..={}: test accuracy median [min–max] {} %, Vanishing at init in \
             {}/{n} seeds, Exploding in {}/{n}",
            o.seed,
            seeds.last().copied().unwrap_or(o.seed),
            s.test_text(),
            s.flagged(|f| f.vanishing.is_some()),
            s.flagged(|f| f.exploding.is_some()),
            n = s.runs.len(),
        );
    }
    println!(
        "\n== summary ({:.1} s; {} backend; accuracies: median [min–max] over seeds {}..={}; \
         ‖dW‖, factor and flags: seed {})",
        start.elapsed().as_secs_f32(),
        gradguard::kernels::backend().name(),
        o.seed,
        seeds.last().copied().unwrap_or(o.seed),
        o.seed
    );
    println!(
        "| configuration | ‖dW₁‖/‖dW₁₀‖ at init | per-layer factor | train % | test % | \
         flags at init / after training |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for s in &summaries {
        let f = s.first;
        let ratio = f.init_norms.first().copied().unwrap_or(f32::NAN)
            / f.init_norms.last().copied().unwrap_or(f32::NAN);
        println!(
            "| {} | {:.1e} | {} | {:.1} | {} | {} / {} |",
            f.name,
            ratio,
            factor_text(f.factor),
            median(&s.final_accuracies(false)),
            s.test_text(),
            flag_text(&f.init_flags),
            flag_text(&f.final_flags)
        );
    }
    if let Err(e) = write_plots(&summaries, &o.out) {
        eprintln!("plots failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
