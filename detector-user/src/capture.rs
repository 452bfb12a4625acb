//! Live capture as one object: the kernel source plus enrichment. `detector run`, `detector
//! record` and the privileged tests all use it.

use crate::{
    enrich::enricher::Enricher,
    event::Event,
    sources::{
        decode::Record,
        kernel::{KernelOptions, KernelSource, SourceError},
    },
};

/// Kernel records in, enriched events out.
pub struct LiveCapture {
    /// The kernel side.
    pub source: KernelSource,
    /// Enrichment state.
    pub(crate) enricher: Enricher,
    records: Vec<Record>,
}

impl LiveCapture {
    /// Preflight, load, attach, seed the process table.
    pub fn start(opts: &KernelOptions) -> Result<Self, SourceError> {
        let source = KernelSource::start(opts)?;
        for st in source.status.iter().filter(|s| !s.attached) {
            tracing::warn!(program = %st.program, hook = %st.hook, reason = st.reason.as_deref().unwrap_or(""), "reduced coverage: {} not captured", st.covers);
        }
        for note in &source.env.notes {
            tracing::info!("{note}");
        }
        let enricher = Enricher::new(source.env.cgroup2.clone(), true);
        Ok(Self {
            source,
            enricher,
            records: Vec::new(),
        })
    }

    /// Waits at most one poll interval and appends the enriched events that arrived.
    pub async fn next_events(&mut self, out: &mut Vec<Event>) -> Result<(), SourceError> {
        self.records.clear();
        self.source.next_batch(&mut self.records).await?;
        for r in &self.records {
            if let Some(ev) = self.enricher.enrich(r, self.source.watch_list()) {
                out.push(ev);
            }
        }
        Ok(())
    }
}
