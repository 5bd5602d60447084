//! Email addresses as login identities.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// A normalised email: trimmed, Unicode NFKC, lowercased. Two spellings of one address
/// normalise to the same value, so the uniqueness index sees them as one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email must not be empty")]
    Empty,
    #[error("email must be at most 254 characters")]
    TooLong,
    #[error("email must have exactly one @ with text on both sides")]
    Shape,
    #[error("email must not contain spaces or control characters")]
    Character,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        // Bound the work before normalising: NFKC can expand its input.
        if raw.len() > 1024 {
            return Err(EmailError::TooLong);
        }
        let normalised: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        if normalised.is_empty() {
            return Err(EmailError::Empty);
        }
        if normalised.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        if normalised.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Character);
        }
        let (local, domain) = normalised.split_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') || local.chars().count() > 64 {
            return Err(EmailError::Shape);
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(EmailError::Shape);
        }
        Ok(Email(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`, for password-policy context.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(local, _)| local)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_normalise_to_one_value() {
        let cases = [
            ("alice@example.com", "alice@example.com"),
            ("  Alice@Example.COM\t", "alice@example.com"),
            // Fullwidth letters and the fullwidth at sign fold under NFKC.
            ("\u{FF21}lice\u{FF20}example.com", "alice@example.com"),
            ("\u{212B}ngstr\u{F6}m@example.se", "\u{e5}ngstr\u{f6}m@example.se"),
        ];
        for (raw, expected) in cases {
            assert_eq!(Email::parse(raw).unwrap().as_str(), expected, "{raw:?}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        let cases = [
            ("", EmailError::Empty),
            ("   ", EmailError::Empty),
            ("no-at-sign", EmailError::Shape),
            ("@example.com", EmailError::Shape),
            ("alice@", EmailError::Shape),
            ("a@b@c", EmailError::Shape),
            ("a@.example.com", EmailError::Shape),
            ("a b@example.com", EmailError::Character),
            ("a\u{0}b@example.com", EmailError::Character),
        ];
        for (raw, expected) in cases {
            assert_eq!(Email::parse(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(Email::parse(&format!("{}@example.com", "a".repeat(65))), Err(EmailError::Shape));
        assert_eq!(Email::parse(&format!("a@{}.com", "b".repeat(260))), Err(EmailError::TooLong));
        assert_eq!(Email::parse(&"x".repeat(5000)), Err(EmailError::TooLong));
    }
}
