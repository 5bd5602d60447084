//! Cluster secrets: where they come from and how they are generated in development.
//!
//! - `prod`: every secret must be configured (file or `TESSERA_…` variable); start-up names
//!   each missing one and stops. There is never a built-in fallback.
//! - `dev`: a missing secret is generated once from the OS CSPRNG into
//!   `<data_dir>/secrets.toml` (mode 0600) and reused on later starts, with a loud warning.
//!   Configured values always win over generated ones.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use tessera_actors::ports::{Entropy, random};

use crate::config::{Profile, Secret, Settings};

const FILE: &str = "secrets.toml";

/// The secrets a node runs with, all identical on every node of a cluster.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// Authenticates peer traffic.
    pub cluster: Secret,
    /// Keys the refresh-token MACs.
    pub refresh_pepper: Secret,
    /// Seals signing keys in the replicated store (decoded from base64url).
    pub key_encryption_key: [u8; 32],
    /// Authenticates the admin API.
    pub admin_token: Secret,
}

impl Secrets {
    /// A key for one `purpose`, derived from the key-encryption key (HMAC-SHA256 keyed with it,
    /// the purpose as message), so one configured secret serves several keys, none reused.
    /// The keys of second factors.
    pub fn factor_keys(&self) -> tessera_actors::factor_keys::FactorKeys {
        let (sealing, recovery) =
            (self.derived_key(purposes::TOTP_SECRETS), self.derived_key(purposes::RECOVERY_CODES));
        tessera_actors::factor_keys::FactorKeys::new(sealing, recovery)
    }

    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key_encryption_key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Purposes of the keys derived from the key-encryption key.
pub mod purposes {
    /// Seals personal data of audit events that belong to no account.
    pub const AUDIT_PII: &str = "tessera/audit-pii/v1";
    /// Signs the audit trail's checkpoints (an Ed25519 seed).
    pub const AUDIT_CHECKPOINT: &str = "tessera/audit-checkpoint/v1";
    /// Seals TOTP secrets in the replicated store.
    pub const TOTP_SECRETS: &str = "tessera/totp-secrets/v1";
    /// Keys the digests of recovery codes.
    pub const RECOVERY_CODES: &str = "tessera/recovery-codes/v1";
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("missing secrets in the prod profile: {0}")]
    Missing(String),
    #[error("cannot read or write {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// Resolves every secret: configured, else (dev only) generated once into the data directory
/// from `entropy`.
pub fn resolve(settings: &Settings, entropy: &dyn Entropy) -> Result<Secrets, SecretsError> {
    let mut values: BTreeMap<&'static str, Secret> = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, env, configured) in settings.secrets() {
        match configured {
            Some(secret) => {
                values.insert(key, secret.clone());
            }
            None => missing.push((key, env)),
        }
    }
    if !missing.is_empty() {
        if settings.profile == Profile::Prod {
            let names: Vec<String> = missing.iter().map(|(key, env)| format!("{key} ({env})")).collect();
            return Err(SecretsError::Missing(names.join(", ")));
        }
        let path = settings.data_dir.join(FILE);
        let mut stored = read_file(&path)?;
        let mut generated = Vec::new();
        for (key, _) in missing {
            let value = stored.entry(key.to_string()).or_insert_with(|| {
                generated.push(key);
                random_secret(entropy)
            });
            values.insert(key, Secret::new(value.clone()));
        }
        if !generated.is_empty() {
            write_file(&path, &stored)?;
            tracing::warn!(
                path = %path.display(),
                generated = ?generated,
                "DEVELOPMENT PROFILE: generated secrets and stored them in the data directory. \
                 Never use the dev profile in production: set TESSERA_PROFILE=prod and configure every secret."
            );
        } else {
            tracing::warn!(path = %path.display(), "DEVELOPMENT PROFILE: using generated secrets from the data directory");
        }
    }
    let take = |key: &str| values.get(key).cloned().expect("every spec was resolved above");
    let kek = take("key_encryption_key").key_bytes().ok_or_else(|| SecretsError::Malformed {
        path: settings.data_dir.join(FILE),
        reason: "key_encryption_key is not 32 bytes of base64url".into(),
    })?;
    Ok(Secrets {
        cluster: take("cluster_secret"),
        refresh_pepper: take("refresh_pepper"),
        key_encryption_key: kek,
        admin_token: take("admin_token"),
    })
}

/// Fresh values for every secret, as shell `export` lines.
pub fn generate_exports(entropy: &dyn Entropy) -> String {
    Settings::default()
        .secrets()
        .iter()
        .map(|(_, env, _)| format!("export {env}={}\n", random_secret(entropy)))
        .collect()
}

/// 32 random bytes as base64url: a valid value for every secret, the key-encryption key included.
fn random_secret(entropy: &dyn Entropy) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>(entropy))
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, SecretsError> {
    match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| SecretsError::Malformed { path: path.to_path_buf(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(SecretsError::File { path: path.to_path_buf(), source }),
    }
}

/// Writes the file with mode 0600 from the start (no window where others could read it).
fn write_file(path: &Path, values: &BTreeMap<String, String>) -> Result<(), SecretsError> {
    let file_err = |source| SecretsError::File { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(file_err)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let text = format!(
        "# Generated by Tessera's dev profile. Not for production.\n{}",
        toml::to_string(values).expect("a string map always renders")
    );
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(file_err)?;
        file.write_all(text.as_bytes()).map_err(file_err)?;
        file.sync_all().map_err(file_err)?;
    }
    fs::rename(&tmp, path).map_err(file_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(dir: &Path) -> Settings {
        Settings { data_dir: dir.to_path_buf(), ..Settings::default() }
    }

    fn resolve(settings: &Settings) -> Result<Secrets, SecretsError> {
        super::resolve(settings, &crate::adapters::SystemEntropy)
    }

    #[test]
    fn dev_generates_secrets_once_with_mode_0600_and_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = resolve(&dev(dir.path())).unwrap();
        let second = resolve(&dev(dir.path())).unwrap();
        assert_eq!(first.cluster.expose(), second.cluster.expose());
        assert!(first.cluster.expose().len() >= crate::config::MIN_SECRET_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_secrets_win_over_generated_ones() {
        let dir = tempfile::tempdir().unwrap();
        resolve(&dev(dir.path())).unwrap();
        let configured = "c".repeat(40);
        let settings = Settings { cluster_secret: Some(Secret::new(configured.clone())), ..dev(dir.path()) };
        assert_eq!(resolve(&settings).unwrap().cluster.expose(), configured);
    }

    #[test]
    fn prod_refuses_to_start_without_secrets_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { profile: Profile::Prod, ..dev(dir.path()) };
        let error = resolve(&settings).unwrap_err().to_string();
        assert!(error.contains("cluster_secret") && error.contains("TESSERA_CLUSTER_SECRET"), "{error}");
        assert!(!dir.path().join(FILE).exists(), "prod must not generate anything");
    }

    #[test]
    fn short_secrets_are_a_problem() {
        let settings = Settings { cluster_secret: Some(Secret::new("short".into())), ..Settings::default() };
        assert!(settings.problems().iter().any(|p| p.contains("cluster_secret")));
    }
}
