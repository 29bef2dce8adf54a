// Selects the memory map by target and passes cortex-m-rt's link.x to the linker. The maps
// are named memory-<board>.x on purpose: a plain memory.x in this folder would be found by
// the linker whatever the target.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    let src = if target.starts_with("thumbv8m") {
        "memory-mps3-an547.x" // Cortex-M55
    } else {
        "memory-mps2-an386.x" // Cortex-M4F, and mps2-an500 (Cortex-M7)
    };
    fs::copy(src, out.join("memory.x")).expect("memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
}
