//! Converts weights between safetensors files (PyTorch, Hugging Face) and gradguard's no_std
//! parameter images, for a chain of dense layers; needs `--features safetensors`.
//!
//! ```text
//! cargo run --release --features safetensors --example export -- \
//!     to-image tests/data/pytorch-digits-64-16-10.safetensors digits.ggpi --rust PRETRAINED
//! cargo run --release --features safetensors --example export -- \
//!     to-safetensors digits.ggpi digits.safetensors --sizes 64,16,10
//! ```
//!
//! Names are PyTorch `nn.Sequential`'s (`0.weight`, `0.bias`, `2.weight`, …) unless
//! `--names fc1,fc2` gives one module name per layer.

use gradguard::interchange::{image_to_safetensors, safetensors_to_image, Naming};
use std::process::ExitCode;

const USAGE: &str = "usage: export to-image IN.safetensors OUT.ggpi [--names A,B,...] [--rust NAME]
       export to-safetensors IN.ggpi OUT.safetensors --sizes IN,UNITS,... [--names A,B,...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `flag`, if given.
fn option<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or(format!("{flag} needs a value")),
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [command, input, output, ..] = args else {
        return Err(USAGE.into());
    };
    let names: Vec<&str> = option(args, "--names")?
        .map(|n| n.split(',').collect())
        .unwrap_or_default();
    let naming = if names.is_empty() {
        Naming::Sequential
    } else {
        Naming::Prefixes(&names)
    };
    let bytes = std::fs::read(input).map_err(|e| format!("{input}: {e}"))?;
    match command.as_str() {
        "to-image" => {
            let (image, sizes) =
                safetensors_to_image(&bytes, naming).map_err(|e| format!("{input}: {e}"))?;
            std::fs::write(output, &image).map_err(|e| format!("{output}: {e}"))?;
            let shape: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
            eprintln!(
                "{output}: {} bytes, a {} dense chain",
                image.len(),
                shape.join("-")
            );
            if let Some(name) = option(args, "--rust")? {
                // A snippet for the firmware: the image in flash, loaded at boot.
                let layers: Vec<String> = sizes
                    .windows(2)
                    .map(|w| format!("Dense<{}, {}, _>", w[0], w[1]))
                    .collect();
                println!("// {} (activations as trained)", layers.join(", "));
                println!(
                    "static {name}: &[u8; {}] = include_bytes!(\"{output}\");",
                    image.len()
                );
                println!(
                    "// at boot: gradguard::image::load({name}, params, gradguard::image::NonFinite::Reject)?;"
                );
            }
        }
        "to-safetensors" => {
            let sizes = option(args, "--sizes")?
                .ok_or("to-safetensors needs --sizes IN,UNITS,...")?
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<usize>()
                        .map_err(|e| format!("--sizes: {s}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let file = image_to_safetensors(&bytes, &sizes, naming)
                .map_err(|e| format!("{input}: {e}"))?;
            std::fs::write(output, &file).map_err(|e| format!("{output}: {e}"))?;
            eprintln!("{output}: {} bytes", file.len());
        }
        other => return Err(format!("unknown command {other}\n{USAGE}")),
    }
    Ok(())
}
