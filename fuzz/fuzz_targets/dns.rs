//! DNS answers as any host on the network can send them (UDP from port 53 reaches the agent's
//! parser through the kernel's DNS capture): learning names from arbitrary bytes must never
//! crash, and whatever it learns is then looked up.
#![no_main]

use std::time::Instant;

use detector::enrich::names::{Names, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut n = Names::new("/nonexistent/hosts".into());
    let now = Instant::now();
    n.learn_answer(data, now);
    for ip in ["10.0.0.1", "::1", "192.0.2.7"] {
        if let Ok(ip) = ip.parse() {
            let _ = n.name_of(ip, Scope::default(), now);
        }
    }
});
