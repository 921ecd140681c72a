//! Sending one probe of a phase the way its flow says: captured variables filled in first (a missing one
//! makes the probe a recorded `LocalError`, not sent), polled when asked, and its own captures taken from
//! the JSON body afterwards. Kept apart from the orchestrator so that `run.rs` stays about phases.

use std::path::Path;

use crate::evidence::ProbeRecord;
use crate::plan::ProbeFlow;
use crate::probe::capture::Captured;
use crate::probe::{Inspect, ProbeClient, ProbeSpec};
use crate::redact::Redactor;

/// What sending one probe needs from the run.
pub(super) struct Sending<'a> {
    /// The target's probe client.
    pub(super) client: &'a ProbeClient,
    /// Masks secrets in texts the orchestrator adds to records (capture and poll failures).
    pub(super) redactor: &'a Redactor,
    /// The RUN_ID, for `status.txt`.
    pub(super) run_id: &'a str,
    /// The run folder being written.
    pub(super) dir: &'a Path,
}

impl Sending<'_> {
    /// Sends one probe following its flow: fills in captured variables (a missing one makes the probe a
    /// recorded `LocalError`, not sent), polls when asked, and takes the values it captures. A failed
    /// capture makes the probe not Ready.
    pub(super) async fn probe(
        &self,
        spec: &ProbeSpec,
        flow: Option<&ProbeFlow>,
        captured: &Captured,
    ) -> (ProbeRecord, Captured) {
        let mut taken = Captured::default();
        let Some(flow) = flow else { return (self.client.run(spec, self.run_id, self.dir).await, taken) };
        let spec = match captured.resolve(spec, &flow.needs) {
            Ok(spec) => spec,
            Err(reason) => return (self.client.not_sent(spec, self.run_id, self.dir, &reason).await, taken),
        };
        let mut inspected = match &flow.poll {
            Some(poll) => poll.run(self.client, &spec, self.run_id, self.dir, self.redactor).await,
            None => {
                let inspect = Inspect { keep_json: !flow.captures.is_empty(), attempt: None };
                self.client.run_inspected(&spec, self.run_id, self.dir, inspect).await
            }
        };
        let failures = taken.take(&flow.captures, &inspected.json);
        if !failures.is_empty() {
            inspected.record.ready = false;
            inspected.record.check_failures.extend(failures.iter().map(|f| self.redactor.text(f)));
            self.client.rewrite_status(&mut inspected.record, self.run_id, self.dir).await;
        }
        (inspected.record, taken)
    }
}
