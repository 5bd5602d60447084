use std::process::ExitCode;

use clap::Parser;
use tessera::cli::{Cli, Command, ConfigCommand};
use tessera::{Node, Settings, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tessera: cannot load configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config(ConfigCommand::Check) => check(&settings),
        Command::Audit(command) => tessera::audit::cli::run(command, &settings),
        Command::Secrets => {
            print!("{}", tessera::secrets::generate_exports(&tessera::adapters::SystemEntropy));
            ExitCode::SUCCESS
        }
        Command::Cluster(args) => {
            let token = settings.admin_token.as_ref().map(|t| t.expose().to_string());
            exit(tessera::admin_cli::run(args, token))
        }
        Command::Clients(args) => {
            let token = settings.admin_token.as_ref().map(|t| t.expose().to_string());
            exit(tessera::admin_cli::clients(args, token))
        }
        Command::Keys(args) => {
            let token = settings.admin_token.as_ref().map(|t| t.expose().to_string());
            exit(tessera::admin_cli::keys(args, token))
        }
        Command::Serve => {
            tessera::startup::restrict_new_files();
            telemetry::init(&settings.log, settings.log_format);
            match Node::start(settings).and_then(Node::run_until_signalled) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "tessera stopped");
                    eprintln!("tessera: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(settings: &Settings) -> ExitCode {
    print!("{}", settings.redacted_toml());
    let problems = settings.problems();
    if problems.is_empty() {
        eprintln!("configuration OK");
        ExitCode::SUCCESS
    } else {
        eprintln!("configuration has {} problem(s):", problems.len());
        for problem in &problems {
            eprintln!("  - {problem}");
        }
        ExitCode::from(2)
    }
}
