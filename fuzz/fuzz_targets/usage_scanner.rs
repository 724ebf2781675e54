//! `cargo +nightly fuzz run usage_scanner`: the property is `tollgate::testing::fuzz::usage_scanner` (also run, bounded,
//! by `tests/e2e/fuzz_props.rs` on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::testing::fuzz::usage_scanner(data));
