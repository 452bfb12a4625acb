//! The rule loader on arbitrary bytes: the byte checks, the YAML front-end with its limits,
//! every compile stage; a set that loads also runs its own tests (rule-test events go through
//! the engine). Must never panic, and stay within libFuzzer's time and memory limits.
#![no_main]

use detector::engine::{fields::Policy, rules::RuleSet, testing, Engine, EngineOptions};
use detector::input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = input::check_text("fuzz.yaml", data.to_vec(), &input::RULES) else {
        return;
    };
    if let Ok(set) = RuleSet::load(&[("fuzz.yaml".to_string(), text)]) {
        let mut engine = Engine::new(set, Policy::default(), EngineOptions::default());
        let _ = testing::run_all(&mut engine);
    }
});
