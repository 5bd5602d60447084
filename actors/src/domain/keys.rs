//! The cluster's signing keys and token issuer, decided over the replicated key records.
//!
//! Every node reads the same records, so every node agrees on which key signs and which keys
//! verify. The leader's housekeeping asks [`KeyRecords::plan`] what is missing and writes it
//! with "absent" compares, so two leaders racing cannot both create a first key or an issuer.
//! (Generating a key is cryptography and lives at the edge; deciding that one is needed is
//! here.)

/// What the replica holds about signing keys and the issuer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyRecords<'a> {
    /// The kid new access tokens are signed with, if one is recorded.
    pub active: Option<&'a str>,
    /// The cluster's `iss`, recorded once by the leader that first provisions the cluster.
    pub issuer: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// Nothing is missing.
    Current,
    /// Record what is missing: a first signing key (made active) and/or the issuer.
    Provision { first_key: bool, issuer: Option<String> },
}

impl KeyRecords<'_> {
    /// What the leader must write; `this_issuer` is the issuer this node would record.
    pub fn plan(&self, this_issuer: &str) -> KeyPlan {
        let first_key = self.active.is_none();
        let issuer = self.issuer.is_none().then(|| this_issuer.to_string());
        if !first_key && issuer.is_none() { KeyPlan::Current } else { KeyPlan::Provision { first_key, issuer } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_missing_is_provisioned() {
        let issuer = "https://auth.example.com";
        assert_eq!(
            KeyRecords::default().plan(issuer),
            KeyPlan::Provision { first_key: true, issuer: Some(issuer.to_string()) }
        );
        let keyed = KeyRecords { active: Some("kid"), issuer: None };
        assert_eq!(keyed.plan(issuer), KeyPlan::Provision { first_key: false, issuer: Some(issuer.to_string()) });
        let complete = KeyRecords { active: Some("kid"), issuer: Some("https://other.example.com") };
        assert_eq!(complete.plan(issuer), KeyPlan::Current, "a recorded issuer is never replaced");
    }
}
