//! Password policy in the style of NIST SP 800-63B: length counted in Unicode code points,
//! no composition rules, no truncation or case folding, a bound on input size, and a check
//! against guessable passwords (zxcvbn, with the account's own email as context).

use super::email::Email;

/// Longest password accepted, in bytes; longer input is refused before anything else.
pub const MAX_BYTES: usize = 1024;
/// Longest password accepted, in code points.
pub const MAX_CHARS: usize = 256;
/// Only this many leading characters are scored: strength only grows with length, and the
/// estimator's cost grows faster than linearly.
const SCORED_CHARS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    /// Minimum zxcvbn score, 0–4 (0 disables the check).
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy { min_chars: 8, min_score: 3 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("password must be at most {MAX_CHARS} characters ({MAX_BYTES} bytes)")]
    TooLong,
    #[error("password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("password is too easy to guess: {reason}")]
    TooWeak { reason: String },
}

/// Size bounds only: what a login checks before hashing anything.
pub fn within_bounds(password: &str) -> Result<(), PasswordRejection> {
    if password.len() > MAX_BYTES || password.chars().count() > MAX_CHARS {
        return Err(PasswordRejection::TooLong);
    }
    Ok(())
}

/// Words a guesser would try first for this account: the address, its parts, its pieces.
fn context_words(email: &Email) -> Vec<String> {
    let (local, domain) = email.as_str().split_once('@').unwrap_or((email.as_str(), ""));
    let mut words = vec![email.as_str().to_string(), local.to_string(), domain.to_string(), "tessera".to_string()];
    let squeezed: String = local.chars().filter(|c| c.is_alphanumeric()).collect();
    words.push(squeezed);
    words.extend(local.split(['.', '_', '-', '+']).filter(|p| p.len() >= 3).map(String::from));
    words.extend(domain.split('.').filter(|p| p.len() >= 3).map(String::from));
    words
}

/// Letters and digits only, lowercased: how a guesser sees `text`.
fn squeezed(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// True when, with the address's pieces taken out, fewer than 8 characters of the password
/// remain.
fn mostly_the_address(password: &str, email: &Email) -> bool {
    let password = squeezed(password);
    let mut remaining = password.clone();
    for word in context_words(email) {
        let piece = squeezed(&word);
        if piece.chars().count() >= 3 {
            remaining = remaining.replace(&piece, "");
        }
    }
    remaining != password && remaining.chars().count() < 8
}

impl PasswordPolicy {
    /// Whether `password` may be set for `email`.
    pub fn check(&self, password: &str, email: &Email) -> Result<(), PasswordRejection> {
        within_bounds(password)?;
        let chars = password.chars().count();
        if chars < self.min_chars.max(1) {
            return Err(PasswordRejection::TooShort { min: self.min_chars.max(1) });
        }
        if self.min_score == 0 {
            return Ok(());
        }
        if mostly_the_address(password, email) {
            return Err(PasswordRejection::TooWeak { reason: "it is mostly your email address".to_string() });
        }
        let scored: String = password.chars().take(SCORED_CHARS).collect();
        let estimate = zxcvbn::zxcvbn(&scored, &context_words(email).iter().map(String::as_str).collect::<Vec<_>>());
        if u8::from(estimate.score()) >= self.min_score {
            return Ok(());
        }
        let reason = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()).or_else(|| f.suggestions().first().map(|s| s.to_string())))
            .unwrap_or_else(|| "add more words or characters that are not easy to predict".to_string());
        Err(PasswordRejection::TooWeak { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("jane.doe@example.com").unwrap()
    }

    #[test]
    fn the_policy_table() {
        let policy = PasswordPolicy::default();
        let cases: Vec<(String, bool)> = vec![
            ("tR7#kq2".into(), false), // 7 characters: too short
            // 8 random characters are long enough but only 10^8 guesses: below score 3.
            ("tR7#kq2!".into(), false),
            ("tR7#kq2!x9".into(), true),                   // 10 random characters
            ("password".into(), false),                    // common
            ("password123456789".into(), false),           // common with digits
            ("qwertyuiop".into(), false),                  // keyboard row
            ("jane.doe2024".into(), false),                // the email's local part
            ("janedoe@example.com".into(), false),         // the email itself
            ("correct horse battery staple".into(), true), // a long lowercase passphrase
            ("x".repeat(63) + "Q", false),                 // long but repetitive
            ("Ünïcödé-Pässwörd-🦀-42".into(), true),       // non-ASCII
            ("🦀🐙🦑🐳🦈🐬🐟".into(), false),              // 7 code points: too short
            ("🦀🐙🦑🐳🦈🐬🐟🐠🦐🦞🦂".into(), true),       // 11 emoji
            ("an unguessable passphrase ".repeat(9).chars().take(256).collect::<String>(), true),
            ("y".repeat(257), false), // over 256 code points
            ("é".repeat(600), false), // over 1024 bytes
        ];
        for (password, accepted) in cases {
            let verdict = policy.check(&password, &email());
            assert_eq!(verdict.is_ok(), accepted, "{password:?}: {verdict:?}");
        }
    }

    #[test]
    fn rejections_name_the_reason() {
        let policy = PasswordPolicy::default();
        let Err(PasswordRejection::TooWeak { reason }) = policy.check("password1", &email()) else { panic!() };
        assert!(!reason.is_empty());
        assert_eq!(policy.check("short", &email()), Err(PasswordRejection::TooShort { min: 8 }));
    }

    #[test]
    fn eight_characters_pass_when_the_score_requirement_allows_them() {
        let policy = PasswordPolicy { min_score: 2, ..PasswordPolicy::default() };
        assert!(policy.check("tR7#kq2!", &email()).is_ok());
        assert!(policy.check("🦀🐙🦑🐳🦈🐬🐟🐠", &email()).is_ok(), "8 code points");
    }

    #[test]
    fn the_minimum_length_is_configurable() {
        let policy = PasswordPolicy { min_chars: 15, min_score: 0 };
        assert!(policy.check("fourteen chars", &email()).is_err());
        assert!(policy.check("fifteen chars!!", &email()).is_ok());
    }
}
