//! The withdrawal state machine (docs/design.md §4) as a pure function: `step(status, event)`
//! returns the next status and the effects a stage must apply, or refuses the event. No I/O,
//! so every pair of (status, event) is tested below without a server.
//!
//! Stages apply a step's status change with a conditional write ("only if still in status
//! X"), so two workers racing on one withdrawal cannot both win a transition.

use crate::domain::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The signer refused the request (balance, limit, deny-list); reason kept with it.
    ValidationFailed,
    /// Above the asset's approval threshold: wait for a human.
    NeedsApproval,
    Approved,
    Rejected,
    /// The first transfer attempt was signed and its nonce recorded.
    Signed,
    /// A node accepted the raw transaction (or already had it).
    Broadcast,
    /// Broadcasting failed permanently or too many times.
    SendFailed,
    /// The transfer's receipt succeeded and is deep enough.
    Confirmed,
    /// The transfer's receipt reverted.
    Reverted,
    /// A 0-value cancel at the same nonce was mined instead of the transfer.
    CancelConfirmed,
    /// Operator: try again from a dead-letter queue.
    Reprocess,
    /// Operator: give up on a dead-letter entry.
    Discard,
}

/// What a stage must do besides recording the new status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    EnqueueRequest,
    EnqueueSigned,
    ToInvalidDlq,
    ToTxDlq,
    /// Return reserved funds to the user's available balance.
    ReleaseReservation,
    /// Turn the reservation into spent funds.
    CommitReservation,
    /// Sign and broadcast a 0-value self-transfer at the withdrawal's nonce.
    SignCancel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: Status,
    pub effects: &'static [Effect],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} is not allowed in status {from}")]
pub struct Forbidden {
    pub from: Status,
    pub event: Event,
}

pub fn step(from: Status, event: Event) -> Result<Step, Forbidden> {
    use Effect::*;
    use Event as E;
    use Status as S;
    let (to, effects): (Status, &'static [Effect]) = match (from, event) {
        (S::Received, E::ValidationFailed) => (S::Invalid, &[ReleaseReservation, ToInvalidDlq]),
        (S::Received, E::NeedsApproval) => (S::PendingApproval, &[]),
        (S::Received, E::Signed) => (S::Signed, &[EnqueueSigned]),
        (S::Invalid, E::Reprocess) => (S::Received, &[EnqueueRequest]),
        (S::Invalid, E::Discard) => (S::Rejected, &[ReleaseReservation]),
        (S::PendingApproval, E::Approved) => (S::Received, &[EnqueueRequest]),
        (S::PendingApproval, E::Rejected) => (S::Rejected, &[ReleaseReservation]),
        (S::Signed, E::Broadcast) => (S::Sent, &[]),
        (S::Signed, E::SendFailed) => (S::SendFailed, &[ToTxDlq]),
        // A signed transaction may be mined before its broadcast was recorded (a crash
        // between the node's answer and our write), so the tracker may finish SIGNED too.
        (S::Signed | S::Sent | S::SendFailed, E::Confirmed) => (S::Completed, &[CommitReservation]),
        (S::Signed | S::Sent | S::SendFailed, E::Reverted) => (S::Failed, &[ReleaseReservation]),
        (S::Signed | S::Sent | S::SendFailed, E::CancelConfirmed) => (S::Cancelled, &[ReleaseReservation]),
        (S::SendFailed, E::Reprocess) => (S::Signed, &[EnqueueSigned]),
        // Discarding a signed transfer cannot simply forget it: its nonce is spent and the
        // raw transaction may still be mined. Replace it; whichever is mined decides.
        (S::SendFailed, E::Discard) => (S::SendFailed, &[SignCancel]),
        // A transfer stuck in the mempool is discarded the same way.
        (S::Sent, E::Discard) => (S::Sent, &[SignCancel]),
        _ => return Err(Forbidden { from, event }),
    };
    Ok(Step { to, effects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;
    use Event as E;
    use Status as S;

    const EVENTS: [Event; 12] = [
        E::ValidationFailed,
        E::NeedsApproval,
        E::Approved,
        E::Rejected,
        E::Signed,
        E::Broadcast,
        E::SendFailed,
        E::Confirmed,
        E::Reverted,
        E::CancelConfirmed,
        E::Reprocess,
        E::Discard,
    ];

    /// The whole table: every allowed pair with its outcome. Any pair not listed must be
    /// refused, which the test checks over the full product of statuses and events.
    const ALLOWED: &[(Status, Event, Status, &[Effect])] = &[
        (S::Received, E::ValidationFailed, S::Invalid, &[ReleaseReservation, ToInvalidDlq]),
        (S::Received, E::NeedsApproval, S::PendingApproval, &[]),
        (S::Received, E::Signed, S::Signed, &[EnqueueSigned]),
        (S::Invalid, E::Reprocess, S::Received, &[EnqueueRequest]),
        (S::Invalid, E::Discard, S::Rejected, &[ReleaseReservation]),
        (S::PendingApproval, E::Approved, S::Received, &[EnqueueRequest]),
        (S::PendingApproval, E::Rejected, S::Rejected, &[ReleaseReservation]),
        (S::Signed, E::Broadcast, S::Sent, &[]),
        (S::Signed, E::SendFailed, S::SendFailed, &[ToTxDlq]),
        (S::Signed, E::Confirmed, S::Completed, &[CommitReservation]),
        (S::Sent, E::Confirmed, S::Completed, &[CommitReservation]),
        (S::SendFailed, E::Confirmed, S::Completed, &[CommitReservation]),
        (S::Signed, E::Reverted, S::Failed, &[ReleaseReservation]),
        (S::Sent, E::Reverted, S::Failed, &[ReleaseReservation]),
        (S::SendFailed, E::Reverted, S::Failed, &[ReleaseReservation]),
        (S::Signed, E::CancelConfirmed, S::Cancelled, &[ReleaseReservation]),
        (S::Sent, E::CancelConfirmed, S::Cancelled, &[ReleaseReservation]),
        (S::SendFailed, E::CancelConfirmed, S::Cancelled, &[ReleaseReservation]),
        (S::SendFailed, E::Reprocess, S::Signed, &[EnqueueSigned]),
        (S::SendFailed, E::Discard, S::SendFailed, &[SignCancel]),
        (S::Sent, E::Discard, S::Sent, &[SignCancel]),
    ];

    #[test]
    fn every_pair_is_allowed_or_refused_as_specified() {
        for from in Status::ALL {
            for event in EVENTS {
                let expect = ALLOWED.iter().find(|(f, e, _, _)| *f == from && *e == event);
                let got = step(from, event);
                match expect {
                    Some((_, _, to, effects)) => {
                        assert_eq!(got, Ok(Step { to: *to, effects }), "{from} + {event:?}")
                    }
                    None => assert_eq!(got, Err(Forbidden { from, event }), "{from} + {event:?}"),
                }
            }
        }
    }

    #[test]
    fn terminal_statuses_accept_nothing() {
        for from in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in EVENTS {
                assert!(step(from, event).is_err(), "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn funds_are_released_or_committed_exactly_on_terminal_entry() {
        // Every way into a terminal status settles the reservation exactly once; no other
        // step touches it except INVALID (which releases so the user can spend it meanwhile).
        for (from, event, to, effects) in ALLOWED {
            let settles = effects.iter().filter(|e| matches!(e, ReleaseReservation | CommitReservation)).count();
            if to.is_terminal() {
                assert_eq!(settles, 1, "{from} + {event:?} -> {to}");
            } else if *to != S::Invalid {
                assert_eq!(settles, 0, "{from} + {event:?} -> {to}");
            }
        }
    }

    #[test]
    fn only_the_first_signature_comes_from_received() {
        // A second nonce for one withdrawal is how a user gets paid twice: SIGNED is entered
        // from RECEIVED only, and RECEIVED is never re-entered once a transfer was signed.
        for (from, event, to, _) in ALLOWED {
            if *to == S::Received {
                assert!(matches!(from, S::Invalid | S::PendingApproval), "{from} + {event:?}");
            }
        }
    }
}
