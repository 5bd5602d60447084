//! Tessera's rules: pure, synchronous functions of `(state, input, now, policy)`.
//!
//! No clock, randomness, IO, async, actix or openraft in here. Outcomes are enum values,
//! matched without `_` arms, so a new outcome is a compile error wherever it matters.

pub mod client;
pub mod device;
pub mod email;
pub mod event;
pub mod family;
pub mod guard;
pub mod identity;
pub mod ids;
pub mod ip;
pub mod keys;
pub mod login;
pub mod mfa;
pub mod password;
pub mod refresh_token;
pub mod throttle;
pub mod time;
pub mod webhook;

pub use client::{Client, ClientId, ClientName, ClientSecret};
pub use device::DeviceHash;
pub use email::{Email, EmailError};
pub use event::{Change, Event, KeyRemoval, KeyRotation, LoginFailure};
pub use family::{
    AccessVerdict, Amr, DeviceBinding, EndVerdict, Family, Opening, RefreshVerdict, Revocation, RevokeReason,
    RevokeVerdict, SessionPolicy,
};
pub use guard::{Attempt, LockoutPolicy, LoginGuard, PermitVerdict, ReportVerdict};
pub use identity::{CapAction, CapVerdict, Identity, LoginVerdict, SessionCap};
pub use ids::{FamilyId, Generation, UserId};
pub use ip::IpPrefix;
pub use keys::{KeyPlan, KeyPolicy, KeyRecords, KeyState, KeyStatus, KeyView, RotateDecision, Successor};
pub use login::{
    ChallengeDecision, ChangeDecision, Checked, Live, LoginDecision, LoginPolicy, NewSession, Presented,
    ReauthDecision, RefusalTally, RegisterDecision, Reproof, SecondFactorDecision, Tallied, Verified,
};
pub use mfa::{FactorVerdict, Insufficient, Mfa, Proof, Sealed, StepUp, StepUpLevel};
pub use password::{PasswordPolicy, PasswordRejection};
pub use refresh_token::{Pepper, RefreshToken};
pub use throttle::{SlidingWindow, WindowPolicy, WindowVerdict};
pub use time::{Millis, whole_seconds};
pub use webhook::{Attempt as WebhookAttempt, Due, WebhookCursor};
