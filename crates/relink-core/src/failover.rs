//! What Redis Sentinel says about a failover of the master a client uses,
//! read from the sentinels' Pub/Sub announcements.
//!
//! A sentinel publishes every step of a failover on a channel named after
//! the event (`+odown`, `+try-failover`, `+promoted-slave`,
//! `+switch-master`, ...), with a payload that names the instance and, for a
//! replica or a sentinel, the master it belongs to (`... @ <master-name>
//! <ip> <port>`). [`sentinel_signal`] turns one such message about the
//! service a client follows into a [`FailoverSignal`]; the driver feeds it
//! to the [`Supervisor`](crate::supervisor::Supervisor) as
//! [`Input::Failover`](crate::supervisor::Input::Failover), and the
//! supervisor decides what it means: while a failover of the master is in
//! progress, writes are held back (they wait, within their deadline, rather
//! than reach a master that is being replaced and whose writes the
//! promotion may discard).

/// The channels a watcher subscribes to, on every sentinel it listens to.
pub const SENTINEL_CHANNELS: &[&str] = &[
    "+switch-master",
    "+sdown",
    "+odown",
    "-odown",
    "+try-failover",
    "+elected-leader",
    "+selected-slave",
    "+promoted-slave",
    "+failover-state-select-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "-failover-abort-master-changed",
];

/// One step of a failover of the followed master, as the sentinels tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailoverSignal {
    /// `+sdown master`: one sentinel finds the master down (its own view
    /// only; nothing is decided on it).
    MasterSubjectivelyDown,
    /// `+odown master`: a quorum agrees the master is down; a failover
    /// follows unless it comes back first.
    MasterDown,
    /// `-odown master`: a quorum no longer finds the master down.
    MasterUp,
    /// `+try-failover`, `+elected-leader`, `+selected-slave`,
    /// `+promoted-slave`, `+failover-state-*`: a failover is under way.
    Started,
    /// `+failover-end`, `+failover-end-for-timeout`: the failover is over
    /// (the switch is announced with [`Switched`](Self::Switched)).
    Ended,
    /// `-failover-abort-*` (but `-not-elected`, one sentinel's lost vote):
    /// the failover was given up; the master stays.
    Aborted,
    /// `+switch-master`: the service has a new master.
    Switched,
}

impl FailoverSignal {
    /// Every signal, for bindings that read one by name.
    pub const ALL: [FailoverSignal; 7] = [
        FailoverSignal::MasterSubjectivelyDown,
        FailoverSignal::MasterDown,
        FailoverSignal::MasterUp,
        FailoverSignal::Started,
        FailoverSignal::Ended,
        FailoverSignal::Aborted,
        FailoverSignal::Switched,
    ];

    /// A short stable name for logs and bindings, spelled as in the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverSignal::MasterSubjectivelyDown => "master_subjectively_down",
            FailoverSignal::MasterDown => "master_down",
            FailoverSignal::MasterUp => "master_up",
            FailoverSignal::Started => "started",
            FailoverSignal::Ended => "ended",
            FailoverSignal::Aborted => "aborted",
            FailoverSignal::Switched => "switched",
        }
    }
}

impl core::fmt::Display for FailoverSignal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads one sentinel announcement (`channel`, `payload`): the signal it
/// gives about the master of `service`, or `None` when it concerns another
/// service, a replica's or a sentinel's own state, or is not a failover
/// step.
///
/// ```
/// use relink_core::failover::{sentinel_signal, FailoverSignal};
/// let odown = "master mymaster 127.0.0.1 6379 #quorum 2/2";
/// assert_eq!(sentinel_signal("+odown", odown, "mymaster"), Some(FailoverSignal::MasterDown));
/// let promoted = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379";
/// assert_eq!(sentinel_signal("+promoted-slave", promoted, "mymaster"), Some(FailoverSignal::Started));
/// assert_eq!(sentinel_signal("+odown", odown, "other"), None);
/// ```
pub fn sentinel_signal(channel: &str, payload: &str, service: &str) -> Option<FailoverSignal> {
    let mut words = payload.split_whitespace();
    if channel == "+switch-master" {
        // `<name> <old-ip> <old-port> <new-ip> <new-port>`
        return (words.next() == Some(service)).then_some(FailoverSignal::Switched);
    }
    let kind = words.next()?;
    let name = words.next()?;
    // The master this event is about: the instance itself, or the one
    // named after `@` for a replica or a sentinel.
    let about_master = kind == "master";
    let master = if about_master {
        name
    } else {
        let mut rest = payload.split_whitespace().skip_while(|w| *w != "@");
        rest.next()?;
        rest.next()?
    };
    if master != service {
        return None;
    }
    let signal = match channel {
        "+sdown" if about_master => FailoverSignal::MasterSubjectivelyDown,
        "+odown" if about_master => FailoverSignal::MasterDown,
        // Not `-sdown`: one sentinel's own view, which cannot end a hold
        // that a quorum's `+odown` began (watchers hear several sentinels).
        "-odown" if about_master => FailoverSignal::MasterUp,
        "+try-failover" | "+elected-leader" | "+selected-slave" | "+promoted-slave" => {
            FailoverSignal::Started
        }
        "+failover-end" | "+failover-end-for-timeout" => FailoverSignal::Ended,
        // One sentinel lost the vote: the leader's failover goes on.
        "-failover-abort-not-elected" => return None,
        c if c.starts_with("+failover-state-") => FailoverSignal::Started,
        c if c.starts_with("-failover-abort-") => FailoverSignal::Aborted,
        _ => return None,
    };
    Some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "master mymaster 127.0.0.1 6379";
    const S: &str = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379";

    #[test]
    fn every_step_of_a_failover_is_read() {
        let read = |channel, payload| sentinel_signal(channel, payload, "mymaster");
        assert_eq!(
            read("+sdown", M),
            Some(FailoverSignal::MasterSubjectivelyDown)
        );
        assert_eq!(
            read("+odown", "master mymaster 127.0.0.1 6379 #quorum 2/2"),
            Some(FailoverSignal::MasterDown)
        );
        assert_eq!(read("-odown", M), Some(FailoverSignal::MasterUp));
        assert_eq!(
            read("-sdown", M),
            None,
            "one sentinel's view decides nothing"
        );
        for channel in [
            "+try-failover",
            "+elected-leader",
            "+failover-state-select-slave",
            "+failover-state-send-slaveof-noone",
            "+failover-state-wait-promotion",
            "+failover-state-reconf-slaves",
        ] {
            assert_eq!(read(channel, M), Some(FailoverSignal::Started), "{channel}");
        }
        assert_eq!(read("+selected-slave", S), Some(FailoverSignal::Started));
        assert_eq!(read("+promoted-slave", S), Some(FailoverSignal::Started));
        assert_eq!(read("+failover-end", M), Some(FailoverSignal::Ended));
        assert_eq!(
            read("+failover-end-for-timeout", M),
            Some(FailoverSignal::Ended)
        );
        assert_eq!(
            read("-failover-abort-no-good-slave", M),
            Some(FailoverSignal::Aborted)
        );
        assert_eq!(
            read("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380"),
            Some(FailoverSignal::Switched)
        );
    }

    #[test]
    fn other_services_replicas_and_noise_give_nothing() {
        let read = |channel, payload| sentinel_signal(channel, payload, "mymaster");
        assert_eq!(read("+odown", "master other 127.0.0.1 6379"), None);
        assert_eq!(
            read("+switch-master", "other 127.0.0.1 6379 127.0.0.1 6380"),
            None
        );
        // A replica or a sentinel going down is not the master going down.
        assert_eq!(read("+sdown", S), None);
        assert_eq!(
            read(
                "+sdown",
                "sentinel 127.0.0.1:26379 127.0.0.1 26379 @ mymaster 127.0.0.1 6379"
            ),
            None
        );
        assert_eq!(read("+promoted-slave", "slave 1:2 1 2 @ other 1 2"), None);
        assert_eq!(read("+reboot", M), None);
        assert_eq!(read("+odown", ""), None);
        // A sentinel that lost the election: the leader's failover goes on.
        assert_eq!(read("-failover-abort-not-elected", M), None);
        assert_eq!(read("+selected-slave", "slave x"), None);
        assert_eq!(read("+switch-master", ""), None);
    }
}
