//! `infera-indexer`: the indexer alone (`infera indexer` runs the same thing).

use std::path::PathBuf;

use clap::Parser;

/// Follows the Infera contracts into SQL and serves the read API.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file; `INFERA_INDEXER_*` variables override its keys.
    #[arg(long, env = "INFERA_INDEXER_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(report) => {
            // Errors can quote the RPC or database URL: credentials in it are masked.
            eprintln!(
                "Error: {}",
                infera_chain::redact::redact_text(&format!("{report:?}"))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> eyre::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = infera_indexer::IndexerConfig::load(args.config.as_deref(), std::env::vars())?;
    infera_indexer::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
