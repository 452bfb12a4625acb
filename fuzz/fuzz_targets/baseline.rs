//! The baseline loader on arbitrary bytes. A baseline that loads must survive the round trip
//! `detector learn` makes (written back and read again, equal).
#![no_main]

use detector::enrich::identity::Baseline;
use detector::input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = input::check_text("fuzz.yaml", data.to_vec(), &input::BASELINE) else {
        return;
    };
    if let Ok(b) = Baseline::parse("fuzz.yaml", &text) {
        let again = Baseline::parse("again.yaml", &b.to_yaml())
            .unwrap_or_else(|e| panic!("a loaded baseline does not load back: {e}"));
        assert_eq!(again, b, "round trip changed the baseline");
    }
});
