//! `cargo +nightly fuzz run credentials`: the property is `tollgate::testing::fuzz::credentials` (also run, bounded,
//! by `tests/e2e/fuzz_props.rs` on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::testing::fuzz::credentials(data));
