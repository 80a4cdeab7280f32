//! Behaviour mutants: one behaviour broken on purpose (`Z4J_MUTANT`), so
//! `z4j-conformance mutate` can show that the suite notices. Debug builds
//! and builds with the `mutants` feature honour them; any other build
//! refuses to start with the variable set.

use super::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// After a lockout expires, failures never lock the account again.
    LockoutNotRearmed,
    /// A login for an unknown e-mail skips the uniform response floor.
    LoginFloorSkippedForUnknown,
    /// Event frames are acknowledged before their rows are committed.
    AckBeforeCommit,
    /// Replayed frames are accepted.
    ReplayGuardOff,
    /// Frame signatures are not checked.
    FrameHmacUnchecked,
    /// The per-project event rate limit never refuses.
    EventRateLimitOff,
    /// Silent agent connections are never closed.
    IdleTimeoutNever,
    /// The event and audit retention sweeps delete nothing.
    RetentionNeverDeletes,
    /// A project with exactly 20 receives is flagged for its failure rate.
    AttentionThresholdOffByOne,
    /// Trends answer any window and bucket pair, however many buckets.
    TrendsBucketCapOff,
    /// A user may keep 101 saved views per project.
    SavedViewCapOff,
    /// A bulk retry's explicit task ids are sent without the ownership check.
    BulkRetryIdsUnchecked,
    /// Schedule writes push no `schedule.changed` to dashboards.
    ScheduleTopicSilent,
    /// The activity feed's per-user budget never refuses.
    ActivityBudgetOff,
    /// The global admins' pages render for any signed-in user.
    AdminPagesOpen,
    /// A dashboard socket may subscribe to a project its user is not a member of.
    DashboardMembershipUnchecked,
    /// A dashboard socket is admitted from any Origin.
    DashboardOriginUnchecked,
    /// A hello's NUL characters go to the database as they came.
    HelloNulKept,
    /// A queue's minute of depth history keeps its last report, not its highest.
    DepthLastKept,
    /// Timed-out commands count as answered, with no wait, in command latency.
    LatencyTimeoutsAnswered,
}

const ALL: [(Mutant, &str); 20] = [
    (Mutant::LockoutNotRearmed, "lockout-not-rearmed"),
    (
        Mutant::LoginFloorSkippedForUnknown,
        "login-floor-skipped-for-unknown",
    ),
    (Mutant::AckBeforeCommit, "ack-before-commit"),
    (Mutant::ReplayGuardOff, "replay-guard-off"),
    (Mutant::FrameHmacUnchecked, "frame-hmac-unchecked"),
    (Mutant::EventRateLimitOff, "event-rate-limit-off"),
    (Mutant::IdleTimeoutNever, "idle-timeout-never"),
    (Mutant::RetentionNeverDeletes, "retention-never-deletes"),
    (
        Mutant::AttentionThresholdOffByOne,
        "attention-threshold-off-by-one",
    ),
    (Mutant::TrendsBucketCapOff, "trends-bucket-cap-off"),
    (Mutant::SavedViewCapOff, "saved-view-cap-off"),
    (Mutant::BulkRetryIdsUnchecked, "bulk-retry-ids-unchecked"),
    (Mutant::ScheduleTopicSilent, "schedule-topic-silent"),
    (Mutant::ActivityBudgetOff, "activity-budget-off"),
    (Mutant::AdminPagesOpen, "admin-pages-open"),
    (
        Mutant::DashboardMembershipUnchecked,
        "dashboard-membership-unchecked",
    ),
    (
        Mutant::DashboardOriginUnchecked,
        "dashboard-origin-unchecked",
    ),
    (Mutant::HelloNulKept, "hello-nul-kept"),
    (Mutant::DepthLastKept, "depth-last-kept"),
    (Mutant::LatencyTimeoutsAnswered, "latency-timeouts-answered"),
];

/// Whether this build honours `Z4J_MUTANT`.
pub const AVAILABLE: bool = cfg!(any(debug_assertions, feature = "mutants"));

impl Mutant {
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(m, _)| *m == self)
            .map(|(_, n)| *n)
            .unwrap_or_default()
    }

    /// The mutant a `Z4J_MUTANT` value names; the error names the valid
    /// ones, or says this build has none.
    pub fn parse(value: &str) -> Result<Mutant, String> {
        if !AVAILABLE {
            return Err("is honoured only by debug builds and builds with \
                        `--features mutants`; unset it"
                .to_owned());
        }
        ALL.iter()
            .find(|(_, n)| *n == value)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|(_, n)| *n).collect();
                format!("{value:?} is not a mutant; one of {}", names.join(", "))
            })
    }
}

impl Settings {
    /// Whether mutant `m` is switched on.
    pub fn mutant(&self, m: Mutant) -> bool {
        AVAILABLE
            && self
                .mutant
                .as_deref()
                .is_some_and(|v| Mutant::parse(v) == Ok(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused_with_the_list() {
        if !AVAILABLE {
            return;
        }
        for (m, n) in ALL {
            assert_eq!(Mutant::parse(n), Ok(m));
            assert_eq!(m.name(), n);
        }
        let e = Mutant::parse("nope").unwrap_err();
        assert!(
            e.contains("\"nope\"") && e.contains("replay-guard-off"),
            "{e}"
        );
    }
}
