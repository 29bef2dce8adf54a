//! Parameter and optimiser images from arbitrary bytes: `image::load` never panics, a
//! refused image leaves the destination unchanged, and an accepted one saves back to the
//! same bytes. The first byte picks the destination (parameters, Momentum or Adam state)
//! and whether the checksum is recomputed over the rest first, so the checks behind it
//! (header fields, values, hyper-parameters) are reached too. Run:
//! `cargo +nightly fuzz run image`.
#![no_main]

use gradguard::image::{self, NonFinite, Persistent};
use gradguard::{Adam, Dense, Layer, Momentum, Relu, Seq, Zeroed};
use libfuzzer_sys::fuzz_target;

type Params = <Seq![Dense<3, 2, Relu>, Dense<2, 2>] as Layer>::Params;

/// Loads `bytes` into a zeroed destination and checks the contract.
fn check<S: Persistent + Zeroed>(bytes: &[u8], non_finite: NonFinite) {
    // A recognisable, valid starting state: the zeroed one's image, then loaded.
    let mut dest = S::ZEROED;
    let mut before = vec![0u8; S::IMAGE_BYTES];
    image::save(&dest, &mut before).expect("buffer fits");
    match image::load(bytes, &mut dest, non_finite) {
        Err(_) => {
            let mut after = vec![0u8; S::IMAGE_BYTES];
            image::save(&dest, &mut after).expect("buffer fits");
            assert_eq!(after, before, "a refused image changed the destination");
        }
        Ok(()) => {
            let mut again = vec![0u8; S::IMAGE_BYTES];
            image::save(&dest, &mut again).expect("buffer fits");
            assert_eq!(
                &again[..],
                &bytes[..S::IMAGE_BYTES],
                "loaded state saves differently"
            );
        }
    }
    let mut scratch = S::ZEROED;
    assert_eq!(
        image::verify::<S>(bytes, non_finite).is_ok(),
        image::load(bytes, &mut scratch, non_finite).is_ok()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 4 != 0 && bytes.len() >= 32 {
        // Reseal: a valid checksum over whatever the rest says.
        let mut covered = bytes[..28].to_vec();
        covered.extend_from_slice(&bytes[32..]);
        let crc = image::crc32(&covered);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    }
    let non_finite = if mode & 8 != 0 {
        NonFinite::Accept
    } else {
        NonFinite::Reject
    };
    match mode % 4 {
        0 | 3 => check::<Params>(&bytes, non_finite),
        1 => check::<Momentum<Params>>(&bytes, non_finite),
        _ => check::<Adam<Params>>(&bytes, non_finite),
    }
});
