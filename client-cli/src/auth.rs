//! `user`, `role` and `auth`: the cluster's users, roles and permissions
//! (the server's `/auth` routes), and where passwords come from. A password
//! is never taken from the command line: an environment variable or the
//! first line of stdin.

use std::io::BufRead;

use clap::{ArgGroup, Subcommand};
use raft_core::auth::{Access, Permission};
use raft_core::wire::{
    AuthChanged, AuthStatus, NewRole, NewUser, PasswordChange, RoleInfo, UserInfo,
};
use reqwest::Method;
use serde::Serialize;

use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{print, print_json, table};

/// The subcommands of `user`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create user NAME; its password comes from RAFT_KV_NEW_PASSWORD, or
    /// with --password-stdin from the first line of stdin.
    Add {
        /// The user's name (A-Z a-z 0-9 _ - @).
        name: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete user NAME (its tokens stop working on every member).
    Delete {
        /// The user.
        name: String,
    },
    /// List the users and their roles.
    List,
    /// Change NAME's password (its older tokens stop working); the new one
    /// comes as for `user add`.
    Passwd {
        /// The user.
        name: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give USER the role ROLE (`root`: everything, administration too).
    GrantRole {
        /// The user.
        #[arg(value_name = "USER")]
        name: String,
        /// The role.
        role: String,
    },
    /// Take ROLE from USER.
    RevokeRole {
        /// The user.
        #[arg(value_name = "USER")]
        name: String,
        /// The role.
        role: String,
    },
}

/// The subcommands of `role`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create role NAME, without permissions.
    Add {
        /// The role's name.
        name: String,
    },
    /// Delete role NAME (and take it from every user).
    Delete {
        /// The role.
        name: String,
    },
    /// Let ROLE read, write or both every key starting with --prefix
    /// (replaces its permission on that prefix).
    #[command(group(ArgGroup::new("access").required(true).args(["read", "write", "readwrite"])))]
    Grant {
        /// The role.
        role: String,
        /// The key prefix ("" is every key).
        #[arg(long)]
        prefix: String,
        /// Get and list.
        #[arg(long)]
        read: bool,
        /// Put and delete.
        #[arg(long)]
        write: bool,
        /// Both.
        #[arg(long)]
        readwrite: bool,
    },
    /// Remove ROLE's permission on --prefix.
    Revoke {
        /// The role.
        role: String,
        /// The permission's prefix.
        #[arg(long)]
        prefix: String,
    },
    /// List the roles and their permissions.
    List,
}

/// The subcommands of `auth`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Require a token on every data request (refused until user `root`
    /// has role `root`).
    Enable,
    /// Stop requiring tokens (every token stops working).
    Disable,
    /// Print whether authentication is enabled.
    Status,
}

/// A password from the environment variable `var`, else the first line of
/// stdin (without its line end); never empty.
pub fn password(var: &str, whose: &str) -> Result<String, CliError> {
    if let Ok(p) = std::env::var(var) {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    stdin_password(whose, var)
}

fn stdin_password(whose: &str, var: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read the password of {whose}: {e}")))?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err(CliError::Usage(format!(
            "no password for {whose}: set {var} or write it as the first line of stdin"
        )));
    }
    Ok(p)
}

/// The new password of `user add` / `user passwd`.
fn new_password(from_stdin: bool, name: &str) -> Result<String, CliError> {
    let whose = format!("the new password of {name}");
    if from_stdin {
        return stdin_password(&whose, "RAFT_KV_NEW_PASSWORD");
    }
    match std::env::var("RAFT_KV_NEW_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(CliError::Usage(format!(
            "{whose}: set RAFT_KV_NEW_PASSWORD or pass --password-stdin"
        ))),
    }
}

fn encode<T: Serialize>(body: &T) -> Result<Option<Vec<u8>>, CliError> {
    serde_json::to_vec(body)
        .map(Some)
        .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))
}

/// Prints a change's outcome.
fn changed(c: AuthChanged, json: bool) -> Result<(), CliError> {
    if json {
        print_json(&c)
    } else {
        print(&format!("OK (auth revision {})\n", c.revision))
    }
}

/// Runs `user ...`.
pub async fn user(
    command: UserCommand,
    client: &mut ApiClient,
    json: bool,
) -> Result<(), CliError> {
    let change = match command {
        UserCommand::List => {
            let users: Vec<UserInfo> = client
                .auth_request(Method::GET, &["auth", "users"], &[], None)
                .await?;
            if json {
                return print_json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| vec![u.name.clone(), u.roles.join(",")])
                .collect();
            return print(&table(&rows, ""));
        }
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let password = new_password(password_stdin, &name)?;
            let body = encode(&NewUser { name, password })?;
            client
                .auth_request(Method::POST, &["auth", "users"], &[], body)
                .await?
        }
        UserCommand::Delete { name } => {
            client
                .auth_request(Method::DELETE, &["auth", "users", &name], &[], None)
                .await?
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = new_password(password_stdin, &name)?;
            let body = encode(&PasswordChange { password })?;
            client
                .auth_request(
                    Method::PUT,
                    &["auth", "users", &name, "password"],
                    &[],
                    body,
                )
                .await?
        }
        UserCommand::GrantRole { name: user, role } => {
            client
                .auth_request(
                    Method::PUT,
                    &["auth", "users", &user, "roles", &role],
                    &[],
                    None,
                )
                .await?
        }
        UserCommand::RevokeRole { name: user, role } => {
            client
                .auth_request(
                    Method::DELETE,
                    &["auth", "users", &user, "roles", &role],
                    &[],
                    None,
                )
                .await?
        }
    };
    changed(change, json)
}

/// Runs `role ...`.
pub async fn role(
    command: RoleCommand,
    client: &mut ApiClient,
    json: bool,
) -> Result<(), CliError> {
    let change = match command {
        RoleCommand::List => {
            let roles: Vec<RoleInfo> = client
                .auth_request(Method::GET, &["auth", "roles"], &[], None)
                .await?;
            if json {
                return print_json(&roles);
            }
            let rows: Vec<Vec<String>> = roles
                .iter()
                .map(|r| {
                    let perms: Vec<String> = r
                        .permissions
                        .iter()
                        .map(|p| format!("{:?}={}", p.prefix, p.access.as_str()))
                        .collect();
                    vec![r.name.clone(), perms.join(" ")]
                })
                .collect();
            return print(&table(&rows, ""));
        }
        RoleCommand::Add { name } => {
            let body = encode(&NewRole { name })?;
            client
                .auth_request(Method::POST, &["auth", "roles"], &[], body)
                .await?
        }
        RoleCommand::Delete { name } => {
            client
                .auth_request(Method::DELETE, &["auth", "roles", &name], &[], None)
                .await?
        }
        RoleCommand::Grant {
            role,
            prefix,
            read,
            write,
            readwrite: _,
        } => {
            let access = match (read, write) {
                (true, _) => Access::Read,
                (_, true) => Access::Write,
                _ => Access::ReadWrite,
            };
            let body = encode(&Permission { prefix, access })?;
            client
                .auth_request(
                    Method::POST,
                    &["auth", "roles", &role, "permissions"],
                    &[],
                    body,
                )
                .await?
        }
        RoleCommand::Revoke { role, prefix } => {
            client
                .auth_request(
                    Method::DELETE,
                    &["auth", "roles", &role, "permissions"],
                    &[("prefix", &prefix)],
                    None,
                )
                .await?
        }
    };
    changed(change, json)
}

/// Runs `auth ...`.
pub async fn auth(
    command: AuthCommand,
    client: &mut ApiClient,
    json: bool,
) -> Result<(), CliError> {
    let path = match command {
        AuthCommand::Status => {
            let status: AuthStatus = client
                .auth_request(Method::GET, &["auth", "status"], &[], None)
                .await?;
            if json {
                return print_json(&status);
            }
            let on = if status.enabled {
                "enabled"
            } else {
                "disabled"
            };
            return print(&format!(
                "authentication {on} (auth revision {})\n",
                status.revision
            ));
        }
        AuthCommand::Enable => "enable",
        AuthCommand::Disable => "disable",
    };
    let change = client
        .auth_request(Method::POST, &["auth", path], &[], None)
        .await?;
    changed(change, json)
}
