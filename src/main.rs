use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tubesum::telemetry::init("warn,tubesum=info");
    let cli = tubesum::cli::Cli::parse();
    match tubesum::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
