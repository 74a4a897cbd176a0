use clap::Parser;
use tubesum::cli::{Cli, Command};

/// mimalloc rather than glibc's malloc: the pipeline allocates many small, short-lived messages
/// across threads, where glibc's arenas spent a tenth of the CPU (see README, Benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The server logs its work; the one-shot commands show progress bars and only warnings.
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,tubesum=info",
        _ => "warn",
    };
    tubesum::observability::telemetry::init(default_filter);
    match tubesum::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
