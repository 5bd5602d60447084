//! `tessera audit …`.

use std::process::ExitCode;

use ed25519_dalek::VerifyingKey;

use super::checkpoint::{self, format_public_key, parse_public_key};
use super::store::AuditStore;
use super::verify::{self, Bad, Report, Verifier};
use crate::adapters::SystemEntropy;
use crate::cli::AuditCommand;
use crate::config::Settings;
use crate::secrets::{self, purposes};

pub fn run(command: AuditCommand, settings: &Settings) -> ExitCode {
    match command {
        AuditCommand::PublicKey => match configured_key(settings) {
            Ok(key) => {
                println!("{}", format_public_key(&key));
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, &e),
        },
        AuditCommand::Verify { public_key, database_url } => {
            let key = match public_key {
                Some(text) => parse_public_key(&text),
                None => configured_key(settings),
            };
            let key = match key {
                Ok(key) => key,
                Err(e) => return fail(2, &e),
            };
            let url = database_url.unwrap_or_else(|| settings.database_url().expose().to_string());
            match check(&url, &key) {
                Ok(Ok(report)) => {
                    println!("{}", summary(&report));
                    ExitCode::SUCCESS
                }
                Ok(Err(bad)) => {
                    println!("audit trail NOT intact: {bad}");
                    ExitCode::from(1)
                }
                Err(e) => fail(2, &format!("cannot read the audit trail: {e}")),
            }
        }
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("tessera: {message}");
    ExitCode::from(code)
}

/// The checkpoint key's public half, from the configured (or, in development, generated) secrets.
fn configured_key(settings: &Settings) -> Result<VerifyingKey, String> {
    let secrets = secrets::resolve(settings, &SystemEntropy).map_err(|e| e.to_string())?;
    Ok(checkpoint::signing_key(&secrets.derived_key(purposes::AUDIT_CHECKPOINT)).verifying_key())
}

fn check(url: &str, key: &VerifyingKey) -> anyhow::Result<Result<Report, Bad>> {
    let start = |snapshot: &_| verify::checkpoints(snapshot, key).and_then(|vouched| Verifier::new(snapshot, vouched));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = AuditStore::connect(url).await?;
        let mut verifier: Option<Verifier> = None;
        let scanned = store
            .scan(|snapshot, entry| {
                if verifier.is_none() {
                    verifier = Some(start(snapshot)?);
                }
                verifier.as_mut().expect("set above").push(&entry)
            })
            .await?;
        let snapshot = match scanned {
            Ok(snapshot) => snapshot,
            Err(bad) => return Ok(Err(bad)),
        };
        // No audit entry at all: the checkpoints and heads alone.
        let verifier = match verifier.map_or_else(|| start(&snapshot), Ok) {
            Ok(verifier) => verifier,
            Err(bad) => return Ok(Err(bad)),
        };
        Ok(verifier.finish(snapshot.audit_head))
    })
}

fn summary(report: &Report) -> String {
    let kept = match report.kept {
        Some((first, last)) => format!("seq {first}..={last} kept"),
        None => "no events kept".to_string(),
    };
    let purged = report.purged_through.map(|p| format!(", seq 1..={p} purged by retention")).unwrap_or_default();
    let checkpointed = match report.last_checkpoint {
        Some(seq) => format!("{} signed checkpoints, the last at seq {seq}", report.checkpoints),
        None => "no signed checkpoint yet".to_string(),
    };
    format!("audit trail intact: {kept}{purged}; {checkpointed}")
}
