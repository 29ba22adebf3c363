//! Every decoder of bytes from storage or from clients, on arbitrary input:
//! see `ostore::objectstore::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ostore::objectstore::fuzz::decoders(data));
