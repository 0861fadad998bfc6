//! Identifiers. A withdrawal id is a UUIDv7 string: time-ordered, so the primary key index
//! stays append-mostly and ids sort by submission time in the console.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WithdrawalId(String);

impl WithdrawalId {
    /// Accepts any id the system could have issued (a UUID in canonical text form).
    pub fn parse(s: &str) -> Option<WithdrawalId> {
        let ok = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
            });
        ok.then(|| WithdrawalId(s.to_owned()))
    }

    /// Wraps a value read back from our own store.
    pub fn from_stored(s: String) -> WithdrawalId {
        WithdrawalId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WithdrawalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WithdrawalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WithdrawalId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert!(WithdrawalId::parse("0190f3c4-7b1e-7c3a-9d2e-1234567890ab").is_some());
        assert!(WithdrawalId::parse("0190F3C4-7b1e-7c3a-9d2e-1234567890ab").is_none());
        assert!(WithdrawalId::parse("../etc/passwd").is_none());
        assert!(WithdrawalId::parse("").is_none());
    }
}
