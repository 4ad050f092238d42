//! The `infera` command-line tool.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use infera::devnet::{self, DevnetConfig};

/// Infera: a settlement protocol for AI inference.
#[derive(Debug, Parser)]
#[command(name = "infera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local chain with the protocol deployed, the default model registered and funded
    /// dev accounts; runs until Ctrl-C.
    Devnet {
        /// anvil's RPC port.
        #[arg(long, default_value_t = 8545)]
        port: u16,
        /// The anvil binary (default: $INFERA_ANVIL, then node_modules/.bin/anvil, then PATH).
        #[arg(long)]
        anvil: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> eyre::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    match Cli::parse().command {
        Command::Devnet { port, anvil } => {
            let mut config = DevnetConfig {
                port: Some(port),
                ..DevnetConfig::default()
            };
            if let Some(anvil) = anvil {
                config.anvil = anvil;
            }
            devnet::run(config, async {
                // If the signal handler cannot be installed, stop at once rather than hang.
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
    }
    Ok(())
}
