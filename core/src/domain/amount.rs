//! Money amounts in base units. Parsed from decimal strings with the asset's decimals and
//! never through a float, so "0.1" ETH is exactly 10^17 wei and "0.1234567" of a 6-decimal
//! token is an error rather than a silent rounding.

use alloy::primitives::U256;
use std::fmt;

/// A non-negative amount in the asset's smallest unit (wei for ETH).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub U256);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a plain decimal number (digits, at most one '.', no sign or exponent)")]
    Syntax(String),
    #[error("amount {input:?} has {got} decimal places; the asset allows at most {max}")]
    TooPrecise { input: String, got: usize, max: u8 },
    #[error("amount {0:?} is too large")]
    Overflow(String),
    #[error("amount must be greater than zero")]
    Zero,
}

impl Amount {
    pub const ZERO: Amount = Amount(U256::ZERO);

    /// Parses a whole-unit decimal string ("0.25") into base units for an asset with
    /// `decimals` decimals. Accepts `0`, `12`, `0.5`, `12.000`; refuses signs, exponents,
    /// whitespace, leading zeros such as `01`, a bare `.5` or `5.`, and excess precision.
    pub fn parse_decimal(input: &str, decimals: u8) -> Result<Amount, AmountError> {
        if input.is_empty() {
            return Err(AmountError::Empty);
        }
        let syntax = || AmountError::Syntax(input.to_owned());
        let (whole, frac) = match input.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (input, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        if whole.len() > 1 && whole.starts_with('0') {
            return Err(syntax());
        }
        let frac = match frac {
            Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return Err(syntax()),
            Some(f) => f,
            None => "",
        };
        // Trailing zeros carry no precision: "1.500000" is fine for a 6-decimal asset and so is
        // "1.5000000" (the extra zero adds nothing), but "1.0000001" is not.
        let significant = frac.trim_end_matches('0');
        if significant.len() > decimals as usize {
            return Err(AmountError::TooPrecise { input: input.to_owned(), got: significant.len(), max: decimals });
        }
        let mut digits = String::with_capacity(whole.len() + decimals as usize);
        digits.push_str(whole);
        digits.push_str(significant);
        digits.extend(std::iter::repeat_n('0', decimals as usize - significant.len()));
        let value = U256::from_str_radix(&digits, 10).map_err(|_| AmountError::Overflow(input.to_owned()))?;
        Ok(Amount(value))
    }

    /// Like [`Amount::parse_decimal`] but refuses zero, as every withdrawal and credit must.
    pub fn parse_positive(input: &str, decimals: u8) -> Result<Amount, AmountError> {
        let a = Self::parse_decimal(input, decimals)?;
        if a.is_zero() {
            return Err(AmountError::Zero);
        }
        Ok(a)
    }

    /// Parses base units as stored ("250000000000000000").
    pub fn from_base_units(s: &str) -> Option<Amount> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        U256::from_str_radix(s, 10).ok().map(Amount)
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }

    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }

    /// Base units as a decimal string; the storage and wire form.
    pub fn base_units(&self) -> String {
        self.0.to_string()
    }

    /// Whole units with the asset's decimals, trailing zeros trimmed ("0.25").
    pub fn to_decimal(&self, decimals: u8) -> String {
        let s = self.0.to_string();
        if decimals == 0 {
            return s;
        }
        let d = decimals as usize;
        let padded = if s.len() <= d { format!("{}{}", "0".repeat(d + 1 - s.len()), s) } else { s };
        let (w, f) = padded.split_at(padded.len() - d);
        let f = f.trim_end_matches('0');
        if f.is_empty() { w.to_owned() } else { format!("{w}.{f}") }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, decimals: u8, expect: Result<&str, AmountError>) {
        let got = Amount::parse_positive(input, decimals).map(|a| a.base_units());
        assert_eq!(got, expect.map(str::to_owned), "input {input:?} decimals {decimals}");
    }

    #[test]
    fn parses_and_refuses() {
        check("0.25", 18, Ok("250000000000000000"));
        check("1", 18, Ok("1000000000000000000"));
        check("12.5", 6, Ok("12500000"));
        check("1.500000", 6, Ok("1500000"));
        check("1.5000000", 6, Ok("1500000"));
        check("0.000001", 6, Ok("1"));
        check("7", 0, Ok("7"));
        check("0.0000001", 6, Err(AmountError::TooPrecise { input: "0.0000001".into(), got: 7, max: 6 }));
        check("0.1", 0, Err(AmountError::TooPrecise { input: "0.1".into(), got: 1, max: 0 }));
        check("0", 18, Err(AmountError::Zero));
        check("0.000", 18, Err(AmountError::Zero));
        check("", 18, Err(AmountError::Empty));
        for bad in ["-1", "+1", "1e18", " 1", "1 ", ".5", "5.", "1.2.3", "01", "0x10", "1,5", "NaN", "∞", "1_000"] {
            check(bad, 18, Err(AmountError::Syntax(bad.into())));
        }
        let huge = "1".repeat(80);
        check(&huge, 18, Err(AmountError::Overflow(huge.clone())));
    }

    #[test]
    fn round_trips_to_decimal() {
        for (s, d) in [("0.25", 18), ("1", 18), ("123.000001", 6), ("5", 0), ("0.000000000000000001", 18)] {
            let a = Amount::parse_positive(s, d).unwrap();
            assert_eq!(a.to_decimal(d), s);
        }
    }

    #[test]
    fn base_units_parse() {
        assert_eq!(Amount::from_base_units("42"), Some(Amount(U256::from(42))));
        assert_eq!(Amount::from_base_units("-1"), None);
        assert_eq!(Amount::from_base_units(""), None);
    }
}
