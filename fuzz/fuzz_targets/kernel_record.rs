//! The kernel record decoder on arbitrary ring-buffer records (any length, kind and payload),
//! and the string helpers that read its fields.
#![no_main]

use detector::sources::decode::{argv, cstr, decode, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Record::Exec(e)) => {
            let _ = cstr(&e.filename);
            let _ = argv(&e.args, e.args_len as usize);
        }
        Ok(Record::File(f)) => {
            let _ = cstr(&f.path);
        }
        Ok(r) => {
            let _ = r.ts_ns();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
