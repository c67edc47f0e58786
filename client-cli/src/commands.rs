//! One function per subcommand: call the API, render the answer.

use raft_core::wire::AddMemberRequest;
use raft_core::Condition;
use serde_json::json;

use crate::bench;
use crate::cli::{Cli, Command, MemberCommand, SnapshotCommand};
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{self, print, print_json};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli {
        servers,
        timeout,
        json,
        token,
        tls,
        user,
        command,
    } = cli;
    let tls = tls.load()?;
    match command {
        Command::Bench(args) => bench::run(args, servers, timeout, json, tls).await,
        command => {
            let mut client = ApiClient::new(servers, timeout, token, tls)?;
            if let Some(user) = user {
                let password = crate::auth::password("RAFT_KV_PASSWORD", &format!("user {user}"))?;
                client.login(&user, &password).await?;
            }
            run_api(command, &mut client, json).await
        }
    }
}

/// Runs one request-and-answer command.
async fn run_api(command: Command, client: &mut ApiClient, json: bool) -> Result<(), CliError> {
    match command {
        Command::Get {
            key,
            consistency,
            raw,
        } => match client.get(&key, consistency).await? {
            None => Err(CliError::NotFound(key)),
            Some(kv) if json => print_json(&kv),
            Some(kv) if raw => print(&kv.value),
            Some(kv) => print(&format!("{}\n", kv.value)),
        },
        Command::Put {
            key,
            value,
            file,
            if_index,
            if_absent,
        } => {
            let value = read_value(value, file)?;
            let condition = match (if_index, if_absent) {
                (Some(index), _) => Some(Condition::ModIndex(index)),
                (None, true) => Some(Condition::Absent),
                (None, false) => None,
            };
            let written = client.put(&key, &value, condition).await?;
            if json {
                print_json(&written)
            } else {
                print("OK\n")
            }
        }
        Command::Delete {
            prefix: Some(prefix),
            ..
        } => {
            let deleted = client.delete_prefix(&prefix).await?;
            if json {
                print_json(&deleted)
            } else {
                print(&format!("{}\n", deleted.deleted))
            }
        }
        Command::Delete {
            key: Some(key),
            if_index,
            prefix: None,
        } => {
            let written = client
                .delete(&key, if_index.map(Condition::ModIndex))
                .await?;
            if json {
                print_json(&written)
            } else {
                print("OK\n")
            }
        }
        Command::Delete {
            key: None,
            prefix: None,
            ..
        } => Err(CliError::Usage("delete needs a KEY or --prefix P".into())),
        Command::List { prefix, limit } => {
            let list = client.list(&prefix, limit).await?;
            if json {
                return print_json(&list);
            }
            print(&output::list_text(&list))?;
            if list.truncated {
                output::note(&format!(
                    "note: more keys match than the {} shown (raise --limit)",
                    list.items.len()
                ));
            }
            Ok(())
        }
        Command::Status => {
            let status = client.status().await?;
            if json {
                print_json(&status)
            } else {
                print(&output::status_text(&status))
            }
        }
        Command::Cluster => {
            let cluster = client.cluster().await?;
            if json {
                print_json(&cluster)?;
            } else {
                print(&output::cluster_text(&cluster))?;
            }
            // A member that did not answer is a failure a script must see.
            let silent: Vec<String> = cluster
                .members
                .iter()
                .filter(|m| m.status.is_none())
                .map(|m| m.id.to_string())
                .collect();
            if silent.is_empty() {
                Ok(())
            } else {
                Err(CliError::Unavailable(format!(
                    "{} of {} members did not answer (node {})",
                    silent.len(),
                    cluster.members.len(),
                    silent.join(", node ")
                )))
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "raft-kv-client", &mut out);
            print(&String::from_utf8_lossy(&out))
        }
        Command::Version => {
            let client_version = env!("CARGO_PKG_VERSION");
            let server = client.version().await;
            if json {
                let server = server.as_ref().ok();
                print_json(&json!({"client": client_version, "server": server}))?;
            } else {
                let line = match &server {
                    Ok(v) => format!(
                        "client {client_version}\nserver {} ({})\n",
                        v.version, v.commit
                    ),
                    Err(_) => format!("client {client_version}\n"),
                };
                print(&line)?;
            }
            server.map(drop)
        }
        Command::Snapshot {
            action: Some(SnapshotCommand::Save { file }),
        } => {
            let saved = crate::backup::save(client, &file).await?;
            if json {
                print_json(&saved)
            } else {
                print(&format!(
                    "saved a snapshot at index {} ({} bytes) to {}\n",
                    saved.index,
                    saved.bytes,
                    file.display()
                ))
            }
        }
        Command::Snapshot { action: None } => {
            let snapshot = client.snapshot().await?;
            if json {
                print_json(&snapshot)
            } else {
                print(&format!("snapshot taken at index {}\n", snapshot.index))
            }
        }
        Command::TransferLeader { id } => {
            let answer = client.transfer_leader(id).await?;
            if json {
                let answer = if answer.is_null() {
                    json!({ "to": id })
                } else {
                    answer
                };
                print_json(&answer)
            } else {
                print("OK\n")
            }
        }
        Command::Member { command } => {
            let members = match command {
                MemberCommand::List => client.members().await?,
                MemberCommand::Add {
                    id,
                    url,
                    learner,
                    force,
                } => {
                    client
                        .add_member(&AddMemberRequest {
                            id,
                            url,
                            learner,
                            force,
                        })
                        .await?
                }
                MemberCommand::Promote { id, force } => client.promote_member(id, force).await?,
                MemberCommand::Remove { id, force } => client.remove_member(id, force).await?,
            };
            if json {
                print_json(&members)
            } else {
                print(&output::members_text(&members))
            }
        }
        Command::User { command } => crate::auth::user(command, client, json).await,
        Command::Role { command } => crate::auth::role(command, client, json).await,
        Command::Auth { command } => crate::auth::auth(command, client, json).await,
        Command::Bench(_) => Err(CliError::Usage("bench is not a request command".into())),
    }
}

/// The value of `put`: the argument, stdin for `-`, or `--file`. A value
/// must be UTF-8 (values are JSON strings on the wire).
fn read_value(value: Option<String>, file: Option<std::path::PathBuf>) -> Result<String, CliError> {
    use std::io::Read as _;
    let (bytes, from) = match (value, file) {
        (Some(v), None) if v != "-" => return Ok(v),
        (_, Some(path)) => {
            let bytes = std::fs::read(&path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            (bytes, path.display().to_string())
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
            (bytes, "stdin".to_string())
        }
    };
    String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("the value from {from} is not UTF-8 text")))
}
