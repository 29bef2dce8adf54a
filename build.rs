//! Defines, once, which SIMD backends this build contains, as cfgs the code tests:
//! `gradguard_sse2` (x86_64 with SSE2: SSE2, AVX2+FMA and AVX-512 kernels, chosen at run
//! time), `gradguard_neon` (aarch64 with NEON), `gradguard_simd128` (wasm32 with simd128),
//! and `gradguard_simd` if any of them. Targets without them (microcontrollers, soft-float
//! targets such as `x86_64-unknown-none`) get the scalar kernels only.
//!
//! `gradguard_mve`: a hard-float Arm M-profile build for a CPU with Helium (MVE) floating
//! point, i.e. `-C target-cpu=cortex-m55` or `cortex-m85`, or `-C target-feature=+mve.fp`.
//! Rust does not (yet) expose `mve.fp` as a `target_feature` cfg on stable, so the flags
//! are read from `CARGO_ENCODED_RUSTFLAGS`; the matrix products of the scalar kernels then
//! run as MVE code (`kernels::helium`). A microcontroller has no run-time CPUID: this is a
//! build-time choice, like the target.

fn main() {
    for cfg in [
        "gradguard_simd",
        "gradguard_sse2",
        "gradguard_neon",
        "gradguard_simd128",
        "gradguard_mve",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |feature: &str| features.split(',').any(|f| f == feature);
    let backends = [
        ("gradguard_sse2", arch == "x86_64" && has("sse2")),
        ("gradguard_neon", arch == "aarch64" && has("neon")),
        ("gradguard_simd128", arch == "wasm32" && has("simd128")),
    ];
    for (cfg, present) in backends {
        if present {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    if backends.iter().any(|&(_, present)| present) {
        println!("cargo::rustc-cfg=gradguard_simd");
    }
    let abi = std::env::var("CARGO_CFG_TARGET_ABI").unwrap_or_default();
    let flags = Rustflags::read();
    if arch == "arm" && abi == "eabihf" && flags.mve {
        println!("cargo::rustc-cfg=gradguard_mve");
        if !flags.no_vectorize {
            // MVE floating point flushes subnormals to zero whatever FPSCR.FZ says; LLVM's
            // auto-vectorizer would put such code into gradguard's scalar loops.
            println!(
                "cargo::warning=gradguard: Helium (MVE) build without `-C no-vectorize-loops \
                 -C no-vectorize-slp`: LLVM may vectorize float loops with MVE instructions, \
                 which flush subnormals to zero and break gradguard's underflow accounting \
                 (see README, On a microcontroller)"
            );
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=RUSTFLAGS");
}

/// What the rustc flags say about Helium.
struct Rustflags {
    /// A CPU with MVE floating point (`-C target-cpu=cortex-m55`/`cortex-m85`) or
    /// `-C target-feature=+mve.fp`, not undone by `-mve.fp`/`-mve`.
    mve: bool,
    /// Both `-C no-vectorize-loops` and `-C no-vectorize-slp`.
    no_vectorize: bool,
}

impl Rustflags {
    fn read() -> Self {
        let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
        let mut cpu_mve = false;
        let mut feature_mve = None;
        let (mut no_loops, mut no_slp) = (false, false);
        let mut args = flags.split('\x1f');
        while let Some(arg) = args.next() {
            // `-C name=value`, `-Cname=value` or `--codegen name=value`.
            let option = match arg {
                "-C" | "--codegen" => args.next().unwrap_or_default(),
                _ => arg.strip_prefix("-C").unwrap_or(""),
            };
            if let Some(cpu) = option.strip_prefix("target-cpu=") {
                cpu_mve = matches!(cpu, "cortex-m55" | "cortex-m85");
            } else if let Some(features) = option.strip_prefix("target-feature=") {
                for feature in features.split(',') {
                    match feature {
                        "+mve.fp" => feature_mve = Some(true),
                        "-mve.fp" | "-mve" => feature_mve = Some(false),
                        _ => {}
                    }
                }
            } else if option == "no-vectorize-loops" {
                no_loops = true;
            } else if option == "no-vectorize-slp" {
                no_slp = true;
            }
        }
        Rustflags {
            mve: feature_mve.unwrap_or(cpu_mve),
            no_vectorize: no_loops && no_slp,
        }
    }
}
