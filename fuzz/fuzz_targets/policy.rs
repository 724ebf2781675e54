//! `cargo +nightly fuzz run policy`: the property is `tollgate::testing::fuzz::policy` (also run, bounded,
//! by `tests/e2e/fuzz_props.rs` on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::testing::fuzz::policy(data));
