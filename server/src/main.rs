//! `raft-kv-server`: flags and wiring only; the node lives in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use raft_kv_server::{run, shutdown_signal, Args, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: under load glibc spent a sixth of
/// the node's CPU consolidating and unlinking free chunks, and a million
/// keys took 235 bytes each with glibc, 222 with mimalloc, 206 with jemalloc
/// (issue 15: at most 2x the raw bytes per member).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `raft-kv-server gen-certs DIR`: a throwaway CA and certificates for a
/// local cluster, to try TLS out (`run_cluster.sh --tls`).
#[derive(clap::Parser, Debug)]
#[command(name = "raft-kv-server gen-certs")]
struct GenCerts {
    /// Directory to write ca.pem, node-<id>.pem, node-<id>-key.pem,
    /// client.pem and client-key.pem into.
    dir: std::path::PathBuf,
    /// How many member certificates (ids 1..=N).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Host names or IP addresses the member certificates are valid for,
    /// besides localhost, 127.0.0.1 and ::1 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
}

fn gen_certs(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let g = GenCerts::parse_from(args);
    match raft_kv_server::tls::gen_certs::write_dir(&g.dir, g.nodes, &g.hosts) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raft-kv-server gen-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // A subcommand of its own: the node's flags (a required --node-id
    // among them) do not apply.
    if std::env::args_os().nth(1).is_some_and(|a| a == "gen-certs") {
        return gen_certs(std::env::args_os().skip(1));
    }
    let args = Args::parse();
    // Every client the node builds is given its TLS configuration; this is
    // the default for anything else that asks rustls for one (reqwest is
    // built without a provider of its own).
    raft_kv_server::tls::install_default_provider();
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
