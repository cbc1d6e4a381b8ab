//! When a request goes again: one pure policy for client operations, the
//! HTTP API's questions and whole-room resumes. Pauses grow from 2 ms to
//! 300 ms while a room has no reachable owner.

use std::time::Duration;

/// Pauses between routing attempts, by attempt.
const BACKOFF_MS: [u64; 12] = [2, 5, 10, 20, 40, 80, 120, 200, 300, 300, 300, 300];

/// How long a request keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Patience {
    /// As many tries as there are pauses, while it is not overdue (client
    /// operations).
    Tries,
    /// Until it is overdue (the HTTP API's questions).
    UntilDue,
    /// For as long as someone waits for it (resumes).
    Forever,
}

/// The pause before the try after `attempt` tries, or `None` to give up
/// (then the request is answered `unavailable`).
pub(super) fn pause(attempt: usize, patience: Patience, overdue: bool) -> Option<Duration> {
    let last = BACKOFF_MS[BACKOFF_MS.len() - 1];
    let ms = match (patience, BACKOFF_MS.get(attempt)) {
        (Patience::Forever, ms) => ms.copied().unwrap_or(last),
        _ if overdue => return None,
        (Patience::Tries, ms) => *ms?,
        (Patience::UntilDue, ms) => ms.copied().unwrap_or(last),
    };
    Some(Duration::from_millis(ms))
}

/// Tries counted at most (a request that tries for ever stays at its last
/// pause).
pub(super) const MOST_TRIES: usize = BACKOFF_MS.len();

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(attempt: usize, patience: Patience, overdue: bool) -> Option<u64> {
        pause(attempt, patience, overdue).map(|d| d.as_millis() as u64)
    }

    #[test]
    fn pauses_grow_then_hold() {
        let pauses: Vec<u64> = (0..14)
            .filter_map(|a| ms(a, Patience::Forever, false))
            .collect();
        assert_eq!(pauses[..3], [2, 5, 10]);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(pauses[11..], [300, 300, 300]);
    }

    #[test]
    fn operations_give_up_after_their_tries_or_when_overdue() {
        assert_eq!(ms(0, Patience::Tries, false), Some(2));
        assert_eq!(ms(MOST_TRIES - 1, Patience::Tries, false), Some(300));
        assert_eq!(ms(MOST_TRIES, Patience::Tries, false), None);
        assert_eq!(ms(0, Patience::Tries, true), None);
    }

    #[test]
    fn questions_try_until_due_and_resumes_for_ever() {
        assert_eq!(ms(MOST_TRIES + 5, Patience::UntilDue, false), Some(300));
        assert_eq!(ms(3, Patience::UntilDue, true), None);
        assert_eq!(ms(MOST_TRIES + 5, Patience::Forever, true), Some(300));
    }
}
