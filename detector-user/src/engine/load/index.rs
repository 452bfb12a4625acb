//! Stage 5 of loading: the rules indexed by event kind and literal, and each rule's consumers.

use super::*;
use crate::engine::index::LiteralIndex;

impl RuleSet {
    /// Indexes the rules by kind and literal, and each rule's consumers.
    pub(crate) fn build_index(&mut self) {
        self.by_kind = vec![Vec::new(); KINDS.len() + 1];
        self.consumers = vec![Vec::new(); self.rules.len()];
        for (i, r) in self.rules.iter().enumerate() {
            match &r.body {
                Body::Event {
                    kinds: Some(ks), ..
                } => {
                    for k in ks {
                        self.by_kind[*k as usize].push(i);
                    }
                }
                Body::Event { kinds: None, .. } => self.by_kind[KINDS.len()].push(i),
                Body::Correlation(c) => {
                    for (step, &s) in c.steps.iter().enumerate() {
                        self.consumers[s].push((i, step));
                    }
                }
            }
        }
        let conds: Vec<Option<&Cond>> = self
            .rules
            .iter()
            .map(|r| match &r.body {
                Body::Event { cond, .. } => Some(cond),
                Body::Correlation(_) => None,
            })
            .collect();
        self.index = LiteralIndex::build(&conds, &self.by_kind);
    }
}
