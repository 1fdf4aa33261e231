//! A campaign's timeline: its dates (presale, start, end), the steps the scheduler took, and
//! the rules of what is due when, which action a step runs, which prices are in force, and which
//! dates are acceptable. No I/O; the store keeps one `Schedule` per campaign and refuses a write
//! of a schedule read at an older `version`, which is what makes each step run once. Beside the
//! dates, a campaign may ask for a drift check every so many hours (`PeriodicDrift`); the
//! scheduler starts those the same way, once each.

use serde::{Deserialize, Serialize};

use super::{Action, CampaignStatus, Id, Millis, PriceMode};

/// The scheduled steps of a campaign, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// At `presale_at`: on sale at presale prices.
    Presale,
    /// At `starts_at`: on sale at sale prices.
    Start,
    /// At `ends_at`: finished.
    End,
    /// Not a date of the timeline: the periodic drift check (`PeriodicDrift`), which comes
    /// back every so many hours. Last, so that the records written before it read the same.
    Drift,
}

impl Step {
    /// The dated steps, in the order they come.
    pub const ALL: [Step; 3] = [Step::Presale, Step::Start, Step::End];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Presale => "presale",
            Step::Start => "start",
            Step::End => "end",
            Step::Drift => "drift",
        }
    }

    /// The prices the step's run sends, or `None` for a drift check, which compares with the
    /// prices in force (as an action started by hand).
    pub fn price_mode(self) -> Option<PriceMode> {
        match self {
            Step::Presale => Some(PriceMode::Presale),
            Step::Start => Some(PriceMode::Sale),
            Step::End => Some(PriceMode::Regular),
            Step::Drift => None,
        }
    }

    /// The action the step runs on a campaign in `status`, or why it has nothing to do:
    /// a presale or a start publishes a pending campaign and republishes (with the new prices)
    /// one already on sale; an end finishes a campaign on sale.
    pub fn action(self, status: CampaignStatus) -> Result<Action, String> {
        use CampaignStatus::*;
        match (self, status) {
            (Step::Presale | Step::Start, Pending) => Ok(Action::Publish),
            (Step::Presale | Step::Start, Published | Paused) => Ok(Action::Republish),
            (Step::End, Published | Paused) => Ok(Action::Finish),
            (Step::End, Pending) => Err("the campaign was never published".to_string()),
            // Whatever was sent is checked, finished products too; a pending campaign has
            // nothing sent, and the check is then passed over as having nothing to do.
            (Step::Drift, Pending | Published | Paused | Finished) => Ok(Action::Drift),
            (_, Finished) => Err("the campaign is finished".to_string()),
            (_, Publishing | Pausing | Finishing) => {
                Err(format!("the campaign is {}", status.as_str()))
            }
        }
    }
}

/// A step the scheduler took, or passed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    /// The date it was due at.
    pub due_at: Millis,
    /// When it was taken.
    pub at: Millis,
    /// The action it started and that run's tracker.
    pub action: Option<Action>,
    pub tracker_id: Option<Id>,
    /// Why it started nothing (a later step was due too, the campaign's state, ...).
    pub skipped: Option<String>,
}

/// A drift check every `every_hours`, which the scheduler starts like a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodicDrift {
    pub every_hours: u32,
    /// When the next check is due.
    pub next_at: Millis,
    /// The last check the scheduler started or passed over (its `step` is `Drift`).
    pub last: Option<StepRecord>,
}

/// The longest period a periodic drift check may have: a year.
pub const MAX_DRIFT_EVERY_HOURS: u32 = 8760;

/// A campaign's dates and the steps taken so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub campaign_id: Id,
    pub tenant_id: Id,
    pub presale_at: Option<Millis>,
    pub starts_at: Option<Millis>,
    pub ends_at: Option<Millis>,
    /// Whether the steps' runs write a notification and queue a webhook when they end.
    pub notify: bool,
    /// Steps taken or passed over, in order (dated steps only).
    pub steps: Vec<StepRecord>,
    /// Bumped by every write; the store refuses a write made from an older read.
    pub version: u64,
    /// The periodic drift check, when the campaign asked for one (version 2).
    pub drift: Option<PeriodicDrift>,
}

/// What is due at a moment: the step to take and the earlier ones it passes over.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub step: Step,
    pub at: Millis,
    pub superseded: Vec<(Step, Millis)>,
}

impl Schedule {
    pub fn new(tenant_id: Id, campaign_id: Id) -> Schedule {
        Schedule {
            campaign_id,
            tenant_id,
            presale_at: None,
            starts_at: None,
            ends_at: None,
            notify: true,
            steps: Vec::new(),
            version: 0,
            drift: None,
        }
    }

    pub fn date(&self, step: Step) -> Option<Millis> {
        match step {
            Step::Presale => self.presale_at,
            Step::Start => self.starts_at,
            Step::End => self.ends_at,
            Step::Drift => self.drift.as_ref().map(|d| d.next_at),
        }
    }

    pub fn record(&self, step: Step) -> Option<&StepRecord> {
        self.steps.iter().find(|r| r.step == step)
    }

    /// The steps still to come, with their dates: those after the last step taken that have a
    /// date. A step is never taken twice, and never after a later one.
    pub fn pending(&self) -> Vec<(Step, Millis)> {
        let last = self.steps.iter().map(|r| r.step).max();
        Step::ALL
            .into_iter()
            .filter(|s| last.is_none_or(|l| *s > l))
            .filter_map(|s| self.date(s).map(|at| (s, at)))
            .collect()
    }

    pub fn next(&self) -> Option<(Step, Millis)> {
        self.pending().into_iter().min_by_key(|(s, at)| (*at, *s))
    }

    /// When the scheduler should look at this campaign next: its next step or its next drift
    /// check, whichever comes first.
    pub fn next_due_at(&self) -> Option<Millis> {
        let step = self.next().map(|(_, at)| at);
        let drift = self.drift.as_ref().map(|d| d.next_at);
        step.into_iter().chain(drift).min()
    }

    /// The periodic drift check, when it is due at `now`. A dated step due too goes first.
    pub fn drift_due(&self, now: Millis) -> Option<Due> {
        let at = self.drift.as_ref()?.next_at;
        (at <= now).then(|| Due {
            step: Step::Drift,
            at,
            superseded: Vec::new(),
        })
    }

    /// Turns the periodic drift check on (its first check `every_hours` from `now`), changes
    /// its period (counted from the last check, or from `now` when none was due before it),
    /// or turns it off.
    pub fn check_drift_every(&mut self, every_hours: Option<u32>, now: Millis) {
        if self.drift.as_ref().map(|d| d.every_hours) == every_hours {
            return;
        }
        self.drift = every_hours.map(|every_hours| {
            let last = self.drift.take().and_then(|d| d.last);
            let from = last.as_ref().map_or(now, |l| l.at);
            PeriodicDrift {
                every_hours,
                next_at: (from + i64::from(every_hours) * HOUR_MS).max(now),
                last,
            }
        });
    }

    /// Writes what the scheduler did with a step: a dated step joins `steps`; a drift check
    /// becomes the last one, and the next is due a period after it was taken (so a service
    /// that was down for days checks once, not once a period it missed).
    pub fn took(&mut self, record: StepRecord) {
        match (record.step, self.drift.as_mut()) {
            (Step::Drift, Some(d)) => {
                d.next_at = record.at + i64::from(d.every_hours) * HOUR_MS;
                d.last = Some(record);
            }
            (Step::Drift, None) => {}
            _ => self.steps.push(record),
        }
    }

    /// What is due at `now`: the last of the pending steps whose date has come, and those
    /// before it (a service that was down through a presale and a start only starts).
    pub fn due(&self, now: Millis) -> Option<Due> {
        let mut come: Vec<_> = self
            .pending()
            .into_iter()
            .filter(|(_, at)| *at <= now)
            .collect();
        let (step, at) = come.pop()?;
        Some(Due {
            step,
            at,
            superseded: come,
        })
    }

    /// The prices in force at `now` for an action someone started by hand: presale prices
    /// between the presale and the start, sale prices from the start (or always, without a
    /// start date) until the end, and regular prices outside.
    pub fn price_mode(&self, now: Millis) -> PriceMode {
        let in_presale =
            self.presale_at.is_some_and(|p| p <= now) && self.starts_at.is_some_and(|s| now < s);
        if in_presale {
            return PriceMode::Presale;
        }
        let started = self.starts_at.is_none_or(|s| s <= now);
        let ended = self.ends_at.is_some_and(|e| e <= now);
        if started && !ended {
            PriceMode::Sale
        } else {
            PriceMode::Regular
        }
    }
}

const HOUR_MS: Millis = 3_600_000;

/// The prices in force for a hand-started action on a campaign with this schedule (sale prices
/// when it has none).
pub fn price_mode(schedule: Option<&Schedule>, now: Millis) -> PriceMode {
    schedule.map_or(PriceMode::Sale, |s| s.price_mode(now))
}

/// Checks a campaign's dates once a change is applied: a presale needs a start, and the dates
/// come in order. `given` are the dates the request set, which must lie ahead of `now`.
pub fn check_dates(
    presale_at: Option<Millis>,
    starts_at: Option<Millis>,
    ends_at: Option<Millis>,
    given: &[(&str, Millis)],
    now: Millis,
) -> Result<(), String> {
    if let Some((field, _)) = given.iter().find(|(_, at)| *at <= now) {
        return Err(format!("{field} is in the past"));
    }
    if presale_at.is_some() && starts_at.is_none() {
        return Err("presale_at needs a starts_at: the presale ends when the sale starts".into());
    }
    if let (Some(p), Some(s)) = (presale_at, starts_at) {
        if p >= s {
            return Err("presale_at must come before starts_at".into());
        }
    }
    if let (Some(s), Some(e)) = (starts_at, ends_at) {
        if s >= e {
            return Err("starts_at must come before ends_at".into());
        }
    }
    if let (Some(p), Some(e)) = (presale_at, ends_at) {
        if p >= e {
            return Err("presale_at must come before ends_at".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(p: Option<i64>, s: Option<i64>, e: Option<i64>) -> Schedule {
        Schedule {
            presale_at: p,
            starts_at: s,
            ends_at: e,
            ..Schedule::new(1, 1)
        }
    }

    fn took(s: &mut Schedule, step: Step) {
        s.steps.push(StepRecord {
            step,
            due_at: 0,
            at: 0,
            action: None,
            tracker_id: None,
            skipped: None,
        });
    }

    #[test]
    fn steps_come_in_order_and_once() {
        let mut s = schedule(Some(10), Some(20), Some(30));
        assert_eq!(s.next(), Some((Step::Presale, 10)));
        assert_eq!(s.due(9), None);
        assert_eq!(s.due(10).map(|d| d.step), Some(Step::Presale));
        took(&mut s, Step::Presale);
        assert_eq!(s.next(), Some((Step::Start, 20)));
        took(&mut s, Step::Start);
        took(&mut s, Step::End);
        assert_eq!(s.next(), None);
        assert_eq!(s.due(1000), None);
    }

    #[test]
    fn a_step_taken_passes_over_the_dates_before_it() {
        let mut s = schedule(None, Some(20), Some(30));
        took(&mut s, Step::Start);
        // A presale date set after the start ran never runs.
        s.presale_at = Some(5);
        assert_eq!(s.next(), Some((Step::End, 30)));
    }

    #[test]
    fn after_downtime_only_the_last_due_step_runs() {
        let s = schedule(Some(10), Some(20), Some(30));
        let due = s.due(25).expect("due");
        assert_eq!(due.step, Step::Start);
        assert_eq!(due.superseded, vec![(Step::Presale, 10)]);
    }

    #[test]
    fn prices_in_force_follow_the_dates() {
        let s = schedule(Some(10), Some(20), Some(30));
        assert_eq!(s.price_mode(5), PriceMode::Regular);
        assert_eq!(s.price_mode(10), PriceMode::Presale);
        assert_eq!(s.price_mode(20), PriceMode::Sale);
        assert_eq!(s.price_mode(30), PriceMode::Regular);
        assert_eq!(price_mode(None, 0), PriceMode::Sale);
        assert_eq!(schedule(None, None, None).price_mode(0), PriceMode::Sale);
    }

    #[test]
    fn steps_pick_their_action_from_the_campaigns_status() {
        use CampaignStatus::*;
        assert_eq!(Step::Presale.action(Pending), Ok(Action::Publish));
        assert_eq!(Step::Start.action(Published), Ok(Action::Republish));
        assert_eq!(Step::Start.action(Paused), Ok(Action::Republish));
        assert_eq!(Step::End.action(Published), Ok(Action::Finish));
        assert!(Step::End.action(Pending).is_err());
        assert!(Step::Start.action(Finished).is_err());
    }

    fn drift_check(s: &mut Schedule, at: i64, skipped: Option<&str>) {
        s.took(StepRecord {
            step: Step::Drift,
            due_at: s.drift.as_ref().expect("periodic").next_at,
            at,
            action: skipped.is_none().then_some(Action::Drift),
            tracker_id: skipped.is_none().then_some(7),
            skipped: skipped.map(str::to_string),
        });
    }

    #[test]
    fn a_periodic_drift_check_comes_back_a_period_after_it_was_taken() {
        let h = HOUR_MS;
        let mut s = schedule(None, None, Some(100 * h));
        assert_eq!(s.drift_due(i64::MAX), None, "off by default");
        s.check_drift_every(Some(6), 0);
        assert_eq!(s.next_due_at(), Some(6 * h));
        assert_eq!(s.drift_due(6 * h - 1), None);
        assert_eq!(
            s.drift_due(6 * h).map(|d| (d.step, d.at)),
            Some((Step::Drift, 6 * h))
        );
        // Taken late (the service was down for a day): once, and again six hours after.
        drift_check(&mut s, 30 * h, None);
        assert_eq!(s.next_due_at(), Some(36 * h));
        assert!(
            s.steps.is_empty(),
            "a drift check is not a step of the timeline"
        );
        assert_eq!(s.next(), Some((Step::End, 100 * h)));
        // Passed over (nothing to check) counts as taken.
        drift_check(&mut s, 36 * h, Some("nothing was sent"));
        assert_eq!(s.drift.as_ref().map(|d| d.next_at), Some(42 * h));
        // The same period again changes nothing; a shorter one counts from the last check.
        s.check_drift_every(Some(6), 40 * h);
        assert_eq!(s.next_due_at(), Some(42 * h));
        s.check_drift_every(Some(2), 40 * h);
        assert_eq!(
            s.next_due_at(),
            Some(40 * h),
            "36 h + 2 h has passed: due now"
        );
        s.check_drift_every(Some(24), 40 * h);
        assert_eq!(s.next_due_at(), Some(60 * h));
        // The end comes before the next check.
        s.check_drift_every(Some(200), 40 * h);
        assert_eq!(s.next_due_at(), Some(100 * h));
        s.check_drift_every(None, 40 * h);
        assert_eq!((s.drift.clone(), s.drift_due(i64::MAX)), (None, None));
    }

    #[test]
    fn a_drift_check_runs_on_any_settled_campaign() {
        use CampaignStatus::*;
        for status in [Pending, Published, Paused, Finished] {
            assert_eq!(Step::Drift.action(status), Ok(Action::Drift));
        }
        assert!(Step::Drift.action(Publishing).is_err());
        assert_eq!(Step::Drift.price_mode(), None);
    }

    #[test]
    fn dates_must_be_ahead_and_in_order() {
        let ok = |p, s, e| check_dates(p, s, e, &[], 0);
        assert!(ok(Some(1), Some(2), Some(3)).is_ok());
        assert!(ok(None, None, Some(3)).is_ok());
        assert!(ok(Some(1), None, None).is_err());
        assert!(ok(Some(2), Some(2), None).is_err());
        assert!(ok(None, Some(3), Some(2)).is_err());
        assert!(ok(Some(4), Some(5), Some(3)).is_err());
        let past = check_dates(None, Some(5), None, &[("starts_at", 5)], 10);
        assert_eq!(past, Err("starts_at is in the past".to_string()));
    }
}
