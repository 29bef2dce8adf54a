//! Defines, once, which SIMD backends this build contains, as cfgs the code tests:
//! `gradguard_sse2` (x86_64 with SSE2: SSE2, AVX2+FMA and AVX-512 kernels, chosen at run
//! time), `gradguard_neon` (aarch64 with NEON), `gradguard_simd128` (wasm32 with simd128),
//! and `gradguard_simd` if any of them. Targets without them (microcontrollers, soft-float
//! targets such as `x86_64-unknown-none`) get the scalar kernels only.

fn main() {
    for cfg in [
        "gradguard_simd",
        "gradguard_sse2",
        "gradguard_neon",
        "gradguard_simd128",
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
    println!("cargo::rerun-if-changed=build.rs");
}
