//! One typed path per operation.
//!
//! An operation is a value that names its reply. On the leader, [`Domain::run`] runs it; on
//! any other node the edge forwards it to the leader inside a [`Forwarded`] and decodes the
//! answer as `Result<O::Reply, ActorError>`. "Not the leader" is an `Err` of that answer like
//! any other refusal, so there is no per-operation envelope to write.
//!
//! Adding an operation means: its rule (in `domain`), its actor handler and [`Operation`]
//! impl (next to the actor), its HTTP handler, and one line in [`forwarded!`] below.
//!
//! [`Domain::run`]: crate::service::Domain::run

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::address_actor::Register;
use crate::client_actor::AdmitRegistration;
use crate::clients::{CreateClient, DeleteClient};
use crate::family_actor::{Logout, LogoutAll, LogoutOthers, Refresh, Revoke};
use crate::identity_actor::{AbandonLogin, BeginLogin, ChangePassword, CompleteLogin, FailLogin, Unlock};
use crate::identity_mfa::{
    ConfirmTotp, DisableTotp, PassSecondFactor, Reauthenticate, RegenerateRecoveryCodes, StartTotp,
};
use crate::keys::RotateKeys;
use crate::protocol::ActorError;
use crate::service::Domain;

/// A request to the domain that runs on the leader.
pub trait Operation: Serialize + DeserializeOwned + Into<Forwarded> + 'static {
    type Reply: Serialize + DeserializeOwned + 'static;

    /// Whether the operation only reports the outcome of a password check already made under a
    /// permit. Such a report is worth delivering even right after this process was frozen:
    /// recorded at once, a failure delays the next guess now, and an abandoned attempt gives
    /// its permit back instead of counting as a failure when the permit expires. Every other
    /// operation is refused then (see the edge's gateway).
    const REPORTS_A_CHECK: bool = false;

    /// Runs the operation on this node, which must lead (actors answer `NotLeader` otherwise).
    fn run(self, domain: &Domain) -> impl Future<Output = Result<Self::Reply, ActorError>>;
}

/// Something to do with an operation whose type is known only once a [`Forwarded`] is opened.
pub trait Visitor {
    type Output;

    fn visit<O: Operation>(self, operation: O) -> Self::Output;
}

/// Declares [`Forwarded`]: one variant per operation. A variant's position is its tag on the
/// wire, so operations are only ever appended.
macro_rules! forwarded {
    ($($operation:ident),* $(,)?) => {
        /// An operation on its way from a follower to the leader.
        #[derive(Serialize, Deserialize)]
        pub enum Forwarded {
            $($operation($operation)),*
        }

        $(impl From<$operation> for Forwarded {
            fn from(operation: $operation) -> Forwarded {
                Forwarded::$operation(operation)
            }
        })*

        impl Forwarded {
            /// Hands the operation inside, with its type, to `visitor`.
            pub fn visit<V: Visitor>(self, visitor: V) -> V::Output {
                match self {
                    $(Forwarded::$operation(operation) => visitor.visit(operation)),*
                }
            }
        }
    };
}

forwarded! {
    AdmitRegistration,
    Register,
    BeginLogin,
    CompleteLogin,
    FailLogin,
    AbandonLogin,
    Refresh,
    Logout,
    LogoutAll,
    Unlock,
    LogoutOthers,
    ChangePassword,
    StartTotp,
    ConfirmTotp,
    RegenerateRecoveryCodes,
    DisableTotp,
    PassSecondFactor,
    Reauthenticate,
    RotateKeys,
    CreateClient,
    DeleteClient,
    Revoke,
}
