//! The replay line decoder on arbitrary lines; decoded events go through an engine with the
//! default pack, as `detector replay` does (timestamps up to `u64::MAX`, any field values).
#![no_main]

use std::cell::RefCell;

use detector::commands::replay::{decode_line, Line};
use detector::engine::{fields::Policy, load::load_rules, Engine, EngineOptions, IdMode};
use detector::enrich::identity::IdentityResolver;
use libfuzzer_sys::fuzz_target;

thread_local! {
    // Loading the pack costs milliseconds; each input gets a reset engine instead.
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(
        load_rules(&[], false).expect("default pack"),
        Policy::default(),
        EngineOptions { ids: IdMode::Derived(1), ..Default::default() },
    ));
}

fuzz_target!(|data: &[u8]| {
    let resolver = IdentityResolver::default();
    ENGINE.with(|e| {
        let mut e = e.borrow_mut();
        e.reset(Policy::default());
        let mut alerts = Vec::new();
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            match decode_line(line, i as u64 + 1) {
                Line::Header(h) => e.set_host(&h.host, h.started, false),
                Line::Event(mut ev) => {
                    if let Some(p) = ev.process.as_mut() {
                        resolver.apply(p);
                    }
                    e.process(&ev, &mut alerts);
                    for a in alerts.drain(..) {
                        let _ = serde_json::to_vec(&a);
                    }
                }
                Line::Empty | Line::Bad(_) => {}
            }
        }
        e.finish(&mut alerts);
    });
});
