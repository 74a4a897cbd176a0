//! Tracing: `RUST_LOG`-style filtering (env `TUBESUM_LOG`), to stderr; in tests, `TEST_LOG`.

use tracing_subscriber::EnvFilter;

/// Sets up the process's tracing once: `TUBESUM_LOG` if set, else `default_filter`.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_env("TUBESUM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// For tests: with `TEST_LOG` set, traces go to the test harness's output (shown for failing
/// tests, or all with `--nocapture`). `TEST_LOG=1` means `tubesum=debug`; any other value is a
/// filter (`TEST_LOG=tubesum::actors=trace,info`). Without it nothing is set up. Safe to call from
/// every test.
pub fn init_for_tests() {
    let Ok(spec) = std::env::var("TEST_LOG") else {
        return;
    };
    let spec = if spec.trim().is_empty() || spec.trim() == "1" { "warn,tubesum=debug".to_owned() } else { spec };
    let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(spec)).with_test_writer().try_init();
}
