//! `cargo +nightly fuzz run request_body`: the property is `tollgate::testing::fuzz::request_body` (also run, bounded,
//! by `tests/e2e/fuzz_props.rs` on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::testing::fuzz::request_body(data));
