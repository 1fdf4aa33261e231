//! Progress arithmetic of a run: counts per (connection, phase) and the percentage over all of
//! them. Total counts every product in every phase it must pass; a product that failed in an
//! earlier phase is counted as skipped in the later ones, so progress always reaches 100.

use serde::{Deserialize, Serialize};

use super::{Id, Phase, System};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCount {
    pub phase: Phase,
    pub total: u64,
    pub successful: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl PhaseCount {
    pub fn new(phase: Phase, total: u64) -> PhaseCount {
        PhaseCount {
            phase,
            total,
            successful: 0,
            failed: 0,
            skipped: 0,
        }
    }

    pub fn processed(&self) -> u64 {
        self.successful + self.failed + self.skipped
    }
}

/// One connection's share of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnProgress {
    pub connection_id: Id,
    pub system: System,
    pub phases: Vec<PhaseCount>,
    /// Set when the connection's work stopped as a whole (bad credentials, marketplace down).
    pub error: Option<String>,
}

impl ConnProgress {
    pub fn new(connection_id: Id, system: System, phases: &[Phase], total: u64) -> ConnProgress {
        ConnProgress {
            connection_id,
            system,
            phases: phases.iter().map(|p| PhaseCount::new(*p, total)).collect(),
            error: None,
        }
    }

    /// Records products' outcomes in phase `index`: successes, and failures, each followed by
    /// a skip in every later phase.
    pub fn record(&mut self, index: usize, successful: u64, failed: u64) {
        let Some(count) = self.phases.get_mut(index) else {
            return;
        };
        count.successful += successful;
        count.failed += failed;
        for later in self.phases.iter_mut().skip(index + 1) {
            later.skipped += failed;
        }
    }
}

/// processed / total over every (connection, phase), as a percentage with two decimals.
pub fn percent(connections: &[ConnProgress]) -> f64 {
    let (done, total) = connections
        .iter()
        .flat_map(|c| c.phases.iter())
        .fold((0u64, 0u64), |(d, t), p| (d + p.processed(), t + p.total));
    if total == 0 {
        return 100.0;
    }
    let pct = (done.min(total) as f64) * 100.0 / (total as f64);
    (pct * 100.0).floor() / 100.0
}

/// Per-phase totals over all connections, in first-seen phase order (the seed's phases_status).
pub fn by_phase(connections: &[ConnProgress]) -> Vec<PhaseCount> {
    let mut out: Vec<PhaseCount> = Vec::new();
    for p in connections.iter().flat_map(|c| c.phases.iter()) {
        match out.iter_mut().find(|o| o.phase == p.phase) {
            Some(o) => {
                o.total += p.total;
                o.successful += p.successful;
                o.failed += p.failed;
                o.skipped += p.skipped;
            }
            None => out.push(*p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jumpseller(total: u64) -> ConnProgress {
        ConnProgress::new(
            1,
            System::Jumpseller,
            &[Phase::ProductData, Phase::Variants, Phase::Images],
            total,
        )
    }

    #[test]
    fn a_failure_skips_the_later_phases_so_progress_still_reaches_100() {
        let mut c = jumpseller(2);
        c.record(0, 1, 0);
        c.record(0, 0, 1);
        c.record(1, 1, 0);
        assert_eq!(percent(std::slice::from_ref(&c)), 83.33);
        c.record(2, 1, 0);
        assert_eq!(c.phases[2].skipped, 1);
        assert_eq!(percent(&[c]), 100.0);
    }

    #[test]
    fn phases_add_up_across_connections() {
        let mut a = jumpseller(3);
        let mut b = ConnProgress::new(2, System::Woocommerce, &[Phase::Processing], 4);
        a.record(0, 1, 0);
        b.record(0, 0, 1);
        let phases = by_phase(&[a.clone(), b.clone()]);
        assert_eq!(phases.len(), 4);
        assert_eq!(phases[0].phase, Phase::ProductData);
        assert_eq!(phases[3].failed, 1);
        // 1 of 9 Jumpseller steps and 1 of 4 WooCommerce steps: 2 of 13.
        assert_eq!(percent(&[a, b]), 15.38);
    }

    #[test]
    fn an_empty_run_is_complete() {
        assert_eq!(percent(&[]), 100.0);
    }
}
