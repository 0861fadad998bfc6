//! Destination address parsing. Mixed-case input must carry a valid EIP-55 checksum (a typo
//! in a checksummed address is the classic way to pay a stranger); all-lowercase input has no
//! checksum to check and is accepted. The zero address is always refused.

use alloy::primitives::Address;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address {0:?} is not 0x followed by 40 hex digits")]
    Syntax(String),
    #[error("address {0:?} fails its EIP-55 checksum")]
    Checksum(String),
    #[error("the zero address cannot receive withdrawals")]
    Zero,
}

pub fn parse_destination(s: &str) -> Result<Address, AddressError> {
    let hex = s.strip_prefix("0x").ok_or_else(|| AddressError::Syntax(s.to_owned()))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::Syntax(s.to_owned()));
    }
    let addr: Address = s.parse().map_err(|_| AddressError::Syntax(s.to_owned()))?;
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    if has_upper && has_lower && addr.to_checksum(None) != s {
        return Err(AddressError::Checksum(s.to_owned()));
    }
    if addr.is_zero() {
        return Err(AddressError::Zero);
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let good = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        assert!(parse_destination(good).is_ok());
        assert!(parse_destination(&good.to_lowercase()).is_ok());
        let bad_sum = "0x70997970c51812dc3A010C7d01b50e0d17dc79C8";
        assert_eq!(parse_destination(bad_sum), Err(AddressError::Checksum(bad_sum.into())));
        for s in ["", "0x", "70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x1234", "0xZZ997970C51812dc3A010C7d01b50e0d17dc79C8"] {
            assert_eq!(parse_destination(s), Err(AddressError::Syntax(s.into())), "{s}");
        }
        assert_eq!(parse_destination("0x0000000000000000000000000000000000000000"), Err(AddressError::Zero));
    }
}
