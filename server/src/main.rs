//! `raft-kv-server`: flags and wiring only; the node lives in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use raft_kv_server::{run, shutdown_signal, Args, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("raft-kv-server: invalid --log-level / RUST_LOG: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level beside `message`, as collectors expect.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let settings = match args.into_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("raft-kv-server: {e}");
            return ExitCode::from(2);
        }
    };
    raise_file_limit(settings.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raft-kv-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let addr = format!("{}:{}", settings.host, settings.port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match run(settings, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Descriptors a node holds besides its client connections: WAL segments,
/// snapshot files, peer streams and its own outgoing connections.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// Raises the soft open-file limit (up to the hard one) to what
/// `--max-connections` needs: many systems start processes at 1024, and a
/// connection over the limit cannot even be accepted.
fn raise_file_limit(max_connections: usize) {
    let wanted = max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            limit = got,
            "the open-file limit is below the {wanted} that --max-connections {max_connections} \
             needs: connections past it will not be accepted"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}
