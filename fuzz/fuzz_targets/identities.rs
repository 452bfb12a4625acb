//! The identities loader on arbitrary bytes; a config that loads is asked the questions the
//! engine asks.
#![no_main]

use detector::enrich::identity::IdentityConfig;
use detector::input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = input::check_text("fuzz.yaml", data.to_vec(), &input::IDENTITIES) else {
        return;
    };
    if let Ok(c) = IdentityConfig::parse("fuzz.yaml", &text) {
        let a = "10.1.2.3".parse().expect("literal address");
        let _ = c.service_name(a, 443);
        let _ = c.owns("x", "/etc/shadow");
        let _ = c.peer_declared("x", a, 22);
    }
});
