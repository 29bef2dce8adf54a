//! `GRADGUARD_BACKEND` (read at build time) really selects the kernels that run: CI builds
//! the test suite once per backend, and this test fails if the forced one is not active.

use gradguard::kernels::{backend, Backend};

#[test]
fn the_build_time_backend_is_the_active_one() {
    // Nothing in this binary calls `set_backend`, so this is the initial choice.
    // The same build-time variable the library reads (this test is built with it too).
    let forced = option_env!("GRADGUARD_BACKEND")
        .map(|name| Backend::from_name(name).expect("a backend name"));
    match forced {
        Some(forced) => {
            assert!(
                forced.is_available(),
                "{} cannot run on this machine",
                forced.name()
            );
            assert_eq!(backend(), forced);
        }
        None => assert_eq!(backend(), Backend::best()),
    }
    println!("active backend: {}", backend().name());
}
