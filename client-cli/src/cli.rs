//! The command line: clap definitions and the parsers for durations and
//! server addresses.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use raft_core::NodeId;
use reqwest::Url;

use crate::bench::BenchArgs;
use crate::error::EXIT_CODES_HELP;

/// The default server when neither `--server` nor `RAFT_KV_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3001";

/// Command-line client for raft-kv, a Raft-replicated key-value store.
///
/// Requests go to the servers given with --server, tried in turn; a server
/// that is not the leader forwards the request or names the leader, whom the
/// client then follows. Writes are retried with the same client id and
/// sequence number, so a retried write is applied at most once.
#[derive(Debug, Parser)]
#[command(name = "raft-kv-client", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Server base URL; repeat the flag or give a comma-separated list to
    /// name several (tried in turn).
    #[arg(
        long = "server",
        short = 's',
        global = true,
        value_name = "URL",
        value_delimiter = ',',
        env = "RAFT_KV_SERVER",
        default_value = DEFAULT_SERVER,
        value_parser = parse_server_url,
    )]
    pub servers: Vec<Url>,

    /// Overall deadline of the command, e.g. `5s`, `500ms`, `1m` (in bench:
    /// the deadline of leader discovery and of each request).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Cluster token for the admin commands (snapshot, transfer-leader,
    /// member).
    #[arg(long, global = true, env = "RAFT_KV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// https: the CA file and an optional client certificate.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// Act as this user (clusters with auth enabled): the password comes
    /// from RAFT_KV_PASSWORD, else the first line of stdin. The client gets
    /// one token per run and sends it on every request.
    #[arg(
        long = "user",
        id = "as_user",
        global = true,
        value_name = "NAME",
        env = "RAFT_KV_USER"
    )]
    pub user: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the value of KEY alone on stdout (exit code 1 if it is absent;
    /// `--json` adds its modification index, for `put --if-index`).
    Get {
        /// The key.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        key: String,
        /// Read consistency: `linearizable` goes through the leader,
        /// `stale` answers from the first server's local state.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
        /// Print the value exactly as stored, without a newline after it.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Set KEY to VALUE (`-`: read it from stdin); prints `OK` once the
    /// write is committed. With `--if-index N` or `--if-absent` nothing is
    /// written unless the condition holds (exit code 5, with the key's
    /// current modification index).
    Put {
        /// The key.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        key: String,
        /// The value; `-` reads it from stdin.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (UTF-8, up to the server's
        /// --max-value-bytes).
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
        /// Write only if the key's modification index is N (as `get
        /// --json` shows it): nobody wrote it since you read it.
        #[arg(long, value_name = "N", conflicts_with = "if_absent")]
        if_index: Option<u64>,
        /// Write only if the key is absent (create only).
        #[arg(long)]
        if_absent: bool,
    },
    /// Remove KEY; prints `OK` (also when the key was absent). With
    /// `--prefix P` instead, remove every key starting with P and print how
    /// many.
    Delete {
        /// The key.
        #[arg(
            value_parser = clap::builder::NonEmptyStringValueParser::new(),
            required_unless_present = "prefix",
            conflicts_with = "prefix"
        )]
        key: Option<String>,
        /// Remove only if the key's modification index is N.
        #[arg(long, value_name = "N", conflicts_with = "prefix")]
        if_index: Option<u64>,
        /// Remove every key starting with this (non-empty) prefix.
        #[arg(
            long,
            value_name = "P",
            value_parser = clap::builder::NonEmptyStringValueParser::new()
        )]
        prefix: Option<String>,
    },
    /// List keys and values (`key<TAB>value` per line), in key order; past
    /// the server's page size it reads page after page (each page its own
    /// linearizable read) until --limit keys.
    List {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Print the status of the first server that answers.
    Status,
    /// Print every member's status as a table (exit 3 when a member did
    /// not answer).
    Cluster,
    /// Print the client's version and the server's (`GET /version`).
    Version,
    /// Ask the server to take a snapshot now, or with `save FILE` back the
    /// whole state up (admin; needs --token when the cluster has one).
    Snapshot {
        /// `save FILE`: write a consistent backup to FILE.
        #[command(subcommand)]
        action: Option<SnapshotCommand>,
    },
    /// Ask the leader to hand leadership to node ID (admin; needs --token
    /// when the cluster has one).
    TransferLeader {
        /// The node that should become leader.
        #[arg(value_parser = clap::value_parser!(NodeId).range(1..))]
        id: NodeId,
    },
    /// Show or change the cluster's members (admin; needs --token when the
    /// cluster has one).
    Member {
        /// What to do with the membership.
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Manage users (needs --token before auth is enabled, a root --user
    /// after).
    User {
        /// What to do with users.
        #[command(subcommand)]
        command: crate::auth::UserCommand,
    },
    /// Manage roles and their permissions (like `user`).
    Role {
        /// What to do with roles.
        #[command(subcommand)]
        command: crate::auth::RoleCommand,
    },
    /// Turn authentication on or off, or show whether it is on.
    Auth {
        /// What to do.
        #[command(subcommand)]
        command: crate::auth::AuthCommand,
    },
    /// Generate load and report throughput and latency.
    Bench(BenchArgs),
    /// Print a shell completion script, e.g.
    /// `raft-kv-client completions bash > /etc/bash_completion.d/raft-kv-client`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The subcommands of `snapshot`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a consistent snapshot of the whole state (every write
    /// acknowledged before the command started) into FILE, checked against
    /// its CRC32 before it is put in place. Restore it with
    /// `raft-kv-server --restore FILE`.
    Save {
        /// Where to write the backup (replaced only once the new one is
        /// whole and verified).
        file: std::path::PathBuf,
    },
}

/// The subcommands of `member`. A change prints the configuration once it
/// is committed.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Print the configuration as a table: id, URL, role, leader.
    List,
    /// Add node ID, reachable at URL, as a learner; the leader promotes it
    /// to voter once it has caught up (unless --learner).
    Add {
        /// The new member's id (not in use).
        #[arg(value_parser = clap::value_parser!(NodeId).range(1..))]
        id: NodeId,
        /// Its base URL, as it advertises it: `http://host:port`.
        #[arg(value_parser = parse_member_url)]
        url: String,
        /// Keep it a learner: no automatic promotion once caught up.
        #[arg(long)]
        learner: bool,
        /// Skip the check that the members up can still reach quorum.
        #[arg(long)]
        force: bool,
    },
    /// Make learner ID a voter.
    Promote {
        /// The learner to promote.
        #[arg(value_parser = clap::value_parser!(NodeId).range(1..))]
        id: NodeId,
        /// Skip the check that the members up can still reach quorum.
        #[arg(long)]
        force: bool,
    },
    /// Remove member ID (voter or learner).
    Remove {
        /// The member to remove.
        #[arg(value_parser = clap::value_parser!(NodeId).range(1..))]
        id: NodeId,
        /// Skip the check that the members up can still reach quorum.
        #[arg(long)]
        force: bool,
    },
}

/// Read consistency of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Read through the leader (ReadIndex): sees every committed write.
    Linearizable,
    /// Read the serving node's local state: fast, possibly behind.
    Stale,
}

/// Parses a duration such as `5s`, `500ms`, `1m30s`, `1.5s` or `250us`; a bare
/// number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {text:?}: missing unit"))?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: bad number {num:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ))
            }
        };
        total += seconds(value * scale, text)?;
        rest = tail;
    }
    Ok(total)
}

/// Like [`parse_duration`], but zero is refused.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}"))
}

/// Parses one server address: `http(s)://host:port`, or `host:port` (http
/// is assumed). Only base URLs without a path are accepted.
pub fn parse_server_url(text: &str) -> Result<Url, String> {
    parse_base_url(text, "server address").map(|(url, _)| url)
}

/// Parses a new member's base URL like a server address, and returns it as
/// given (`http://` added when missing, no trailing `/`): the server
/// compares it with the address the new node advertises, so it is not
/// otherwise normalized.
pub fn parse_member_url(text: &str) -> Result<String, String> {
    parse_base_url(text, "member URL").map(|(_, given)| given.trim_end_matches('/').to_string())
}

/// A plain http base URL (`host:port` means `http://host:port`), parsed and
/// as given with its scheme; `what` names it in errors.
fn parse_base_url(text: &str, what: &str) -> Result<(Url, String), String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty {what}"));
    }
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("invalid {what} {text:?}: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "invalid {what} {text:?}: only http:// and https:// are supported"
        ));
    }
    if url.host().is_none() {
        return Err(format!("invalid {what} {text:?}: no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid {what} {text:?}: give only scheme, host and port"
        ));
    }
    Ok((url, with_scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 10s "), Ok(ms(10_000)));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("3"), Ok(ms(3000)));
        assert_eq!(parse_duration("0.25"), Ok(ms(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "s", "5x", "ms5", "-1s", "1..2s", "5 s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("1ms").is_ok());
    }

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server_url("http://127.0.0.1:3001").unwrap().as_str(),
            "http://127.0.0.1:3001/"
        );
        assert_eq!(
            parse_server_url("127.0.0.1:3002/").unwrap().as_str(),
            "http://127.0.0.1:3002/"
        );
        assert_eq!(
            parse_server_url("localhost:3003").unwrap().as_str(),
            "http://localhost:3003/"
        );
        assert_eq!(
            parse_server_url("https://localhost:3003").unwrap().as_str(),
            "https://localhost:3003/"
        );
        for bad in [
            "",
            "ftp://x:1",
            "http://",
            "http://h:1/path",
            "http://h:1/?q=1",
            "http://h:99999",
        ] {
            assert!(parse_server_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn member_urls_are_kept_as_given() {
        assert_eq!(
            parse_member_url("http://10.0.0.4:3004"),
            Ok("http://10.0.0.4:3004".into())
        );
        assert_eq!(
            parse_member_url(" node4:3004/ "),
            Ok("http://node4:3004".into())
        );
        assert_eq!(
            parse_member_url("http://Node4:3004"),
            Ok("http://Node4:3004".into())
        );
        for bad in ["", "ftp://x", "http://", "http://h:1/p", "http://h:0x"] {
            let err = parse_member_url(bad).unwrap_err();
            assert!(err.contains("member URL"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn member_commands_parse() {
        let cli = Cli::try_parse_from([
            "raft-kv-client",
            "member",
            "add",
            "4",
            "127.0.0.1:3004",
            "--learner",
        ])
        .unwrap();
        let Command::Member {
            command:
                MemberCommand::Add {
                    id,
                    url,
                    learner,
                    force,
                },
        } = cli.command
        else {
            panic!("not member add: {:?}", cli.command);
        };
        assert_eq!(
            (id, url.as_str(), learner, force),
            (4, "http://127.0.0.1:3004", true, false)
        );
        let cli =
            Cli::try_parse_from(["raft-kv-client", "member", "remove", "2", "--force"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Member {
                command: MemberCommand::Remove { id: 2, force: true }
            }
        ));
    }

    #[test]
    fn server_lists_mix_commas_and_repeats() {
        let cli = Cli::try_parse_from([
            "raft-kv-client",
            "--server",
            "http://127.0.0.1:3001,127.0.0.1:3002",
            "--server",
            "127.0.0.1:3003",
            "status",
        ])
        .unwrap();
        let got: Vec<&str> = cli.servers.iter().map(Url::as_str).collect();
        assert_eq!(
            got,
            [
                "http://127.0.0.1:3001/",
                "http://127.0.0.1:3002/",
                "http://127.0.0.1:3003/"
            ]
        );
    }

    #[test]
    fn seed_style_invocations_parse() {
        let cli = Cli::try_parse_from([
            "raft-kv-client",
            "--server",
            "http://127.0.0.1:3001",
            "put",
            "mykey",
            "myvalue",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Put { .. }));
        let cli = Cli::try_parse_from(["raft-kv-client", "get", "k", "--json", "--timeout", "2s"])
            .unwrap();
        assert!(cli.json);
        assert_eq!(cli.timeout, ms(2000));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["raft-kv-client"][..],
            &["raft-kv-client", "get"],
            &["raft-kv-client", "get", ""],
            &["raft-kv-client", "--timeout", "0s", "status"],
            &["raft-kv-client", "transfer-leader", "0"],
            &["raft-kv-client", "get", "k", "--consistency", "eventual"],
            &["raft-kv-client", "member"],
            &["raft-kv-client", "member", "add", "0", "http://x:1"],
            &["raft-kv-client", "member", "add", "4", "ftp://x"],
            &["raft-kv-client", "member", "add", "4"],
            &["raft-kv-client", "member", "promote", "0"],
            &["raft-kv-client", "member", "remove", "-1"],
            &[
                "raft-kv-client",
                "put",
                "k",
                "v",
                "--if-index",
                "3",
                "--if-absent",
            ],
            &["raft-kv-client", "put", "k", "v", "--if-index", "x"],
            &["raft-kv-client", "delete"],
            &["raft-kv-client", "delete", "k", "--prefix", "a"],
            &["raft-kv-client", "delete", "--prefix", ""],
            &[
                "raft-kv-client",
                "delete",
                "--prefix",
                "a",
                "--if-index",
                "3",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
