//! `raft-kv-client`: the command-line client and load generator of raft-kv.

mod auth;
mod backup;
mod bench;
mod cli;
mod client;
mod commands;
mod error;
mod output;
mod tls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A bug must still end in one line on stderr, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error: {}",
            error::one_line(&info.to_string())
        );
    }));
    let cli = cli::Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_SERVER_ERROR);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            if json {
                // Scripts that asked for JSON get their errors as JSON too.
                let body = serde_json::json!({"error": e.to_string(), "exit_code": e.exit_code()});
                eprintln!("{body}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
