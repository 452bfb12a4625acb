//! The agent config loader on arbitrary bytes (without the checks of the files it names,
//! which touch the file system).
#![no_main]

use detector::config::AgentConfig;
use detector::input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = input::check_text("fuzz.yaml", data.to_vec(), &input::CONFIG) else {
        return;
    };
    let _ = AgentConfig::parse(&text, std::path::Path::new("fuzz.yaml"));
});
