//! Withdrawal statuses (docs/design.md §4). Their names are part of the public contract.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Received,
    Invalid,
    PendingApproval,
    Signed,
    Sent,
    Completed,
    Failed,
    SendFailed,
    Rejected,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Received,
        Status::Invalid,
        Status::PendingApproval,
        Status::Signed,
        Status::Sent,
        Status::Completed,
        Status::Failed,
        Status::SendFailed,
        Status::Rejected,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "RECEIVED",
            Status::Invalid => "INVALID",
            Status::PendingApproval => "PENDING_APPROVAL",
            Status::Signed => "SIGNED",
            Status::Sent => "SENT",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::SendFailed => "SEND_FAILED",
            Status::Rejected => "REJECTED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// No event moves a withdrawal out of a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Rejected | Status::Cancelled)
    }

    /// Statuses an operator must look at: the two dead-letter queues.
    pub fn is_dead_letter(self) -> bool {
        matches!(self, Status::Invalid | Status::SendFailed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown withdrawal status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("received".parse::<Status>().is_err());
    }
}
