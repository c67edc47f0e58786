#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| raft_kv_fuzz::snapshot_file(data));
