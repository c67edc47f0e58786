//! Users, roles and permissions: the replicated access rules (etcd's RBAC,
//! kept small).
//!
//! [`AuthState`] is part of the key-value state machine ([`crate::KvStore`]):
//! it changes only by committed [`AuthOp`]s, applied in log order, so every
//! member enforces the same rules at the same point of the log. A user has a
//! password hash (a PHC-like string the server computes: the password never
//! enters the log), a set of roles and a token generation; a role has
//! permissions, each a key prefix with [`Access`]. The built-in role
//! [`ROOT`] may do everything, administration included. Auth can be
//! enabled only while a user `root` holds the role `root` (etcd's rule), and
//! while it is enabled that user cannot be deleted nor lose the role.
//!
//! Nothing here hashes or verifies a password or a token: the state only
//! stores what the server computed (the hash, the random token-signing
//! secret) so that every member verifies the same tokens.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The built-in role that may do everything, and the user that must hold
/// it before auth can be enabled.
pub const ROOT: &str = "root";

/// The fewest bytes a token-signing secret may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest user or role name.
pub const MAX_NAME_BYTES: usize = 64;

/// What a permission lets its holders do under its prefix (JSON: `"read"`,
/// `"write"`, `"readwrite"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Get and list.
    Read,
    /// Put and delete.
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    /// Whether holding `self` grants `need` (`Read` or `Write`).
    pub fn grants(self, need: Access) -> bool {
        self == Access::ReadWrite || self == need
    }

    /// The lowercase name (`read`, `write`, `readwrite`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
        }
    }
}

/// Access to every key starting with `prefix` ("" is every key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The key prefix.
    pub prefix: String,
    /// What it allows.
    pub access: Access,
}

/// One user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The password hash, as the server wrote it (PHC-like:
    /// `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>`).
    pub password: String,
    /// The roles the user holds.
    pub roles: BTreeSet<String>,
    /// The auth revision at which the user was created or last changed
    /// password. Tokens name it: a password change, or deleting and
    /// re-creating the user, makes every older token invalid.
    pub generation: u64,
}

/// The replicated users, roles and switch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    enabled: bool,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Vec<Permission>>,
    /// The token-signing secret, drawn by the server that proposed the
    /// enabling command (empty while disabled).
    secret: Vec<u8>,
    /// Bumped by every change.
    revision: u64,
}

/// A change of the access rules (inside [`crate::Op::Auth`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    /// Create a user with a password hash.
    AddUser {
        /// The name.
        name: String,
        /// The password hash.
        password: String,
    },
    /// Delete a user (its tokens stop working).
    DeleteUser {
        /// The name.
        name: String,
    },
    /// Replace a user's password hash (its older tokens stop working).
    SetPassword {
        /// The name.
        name: String,
        /// The new password hash.
        password: String,
    },
    /// Give a user a role.
    GrantRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Take a role from a user.
    RevokeRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Create a role without permissions.
    AddRole {
        /// The name.
        name: String,
    },
    /// Delete a role (and take it from every user).
    DeleteRole {
        /// The name.
        name: String,
    },
    /// Add a permission to a role, replacing the one on the same prefix.
    GrantPermission {
        /// The role.
        role: String,
        /// The permission.
        permission: Permission,
    },
    /// Remove a role's permission on a prefix.
    RevokePermission {
        /// The role.
        role: String,
        /// The prefix.
        prefix: String,
    },
    /// Turn enforcement on, with a fresh token-signing secret.
    Enable {
        /// The secret (at least [`MIN_SECRET_BYTES`]).
        secret: Vec<u8>,
    },
    /// Turn enforcement off (every token stops working: the secret goes).
    Disable,
}

impl AuthOp {
    /// An estimate of the change's encoded size.
    pub fn approx_size(&self) -> usize {
        8 + match self {
            AuthOp::AddUser { name, password } | AuthOp::SetPassword { name, password } => {
                name.len() + password.len()
            }
            AuthOp::DeleteUser { name }
            | AuthOp::AddRole { name }
            | AuthOp::DeleteRole { name } => name.len(),
            AuthOp::GrantRole { user, role } | AuthOp::RevokeRole { user, role } => {
                user.len() + role.len()
            }
            AuthOp::GrantPermission { role, permission } => {
                role.len() + permission.prefix.len() + 1
            }
            AuthOp::RevokePermission { role, prefix } => role.len() + prefix.len(),
            AuthOp::Enable { secret } => secret.len(),
            AuthOp::Disable => 0,
        }
    }
}

/// Why an [`AuthOp`] was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AuthError {
    /// A user of that name exists.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No user of that name.
    #[error("user `{0}` does not exist")]
    NoSuchUser(String),
    /// A role of that name exists (or it is the built-in `root`).
    #[error("role `{0}` already exists")]
    RoleExists(String),
    /// No role of that name.
    #[error("role `{0}` does not exist")]
    NoSuchRole(String),
    /// The role has no permission on that prefix.
    #[error("role `{role}` has no permission on prefix `{prefix}`")]
    NoSuchPermission {
        /// The role.
        role: String,
        /// The prefix.
        prefix: String,
    },
    /// A name that is empty, too long or has characters outside
    /// `A-Z a-z 0-9 _ - @`.
    #[error("`{0}` is not a valid name: 1 to 64 of the characters A-Z a-z 0-9 _ - @")]
    BadName(String),
    /// Auth cannot be enabled without a user `root` holding role `root`.
    #[error("auth cannot be enabled until a user `root` with the role `root` exists")]
    NoRootUser,
    /// While auth is enabled, the user `root` keeps the role `root` and is
    /// not deleted (nobody could administer the cluster any more).
    #[error("while auth is enabled the user `root` cannot be deleted nor lose the role `root`")]
    RootLocked,
    /// The built-in role `root` cannot be deleted or given permissions.
    #[error("the role `root` is built in: it has every permission and cannot be changed")]
    RootRoleBuiltIn,
    /// The token-signing secret is too short.
    #[error("the token-signing secret must have at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
}

/// Who a request is made for: a user's name and the token generation its
/// request names.
pub type Principal<'a> = (&'a str, u64);

/// What a request needs, checked by [`AuthState::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Read a key, or every key under a prefix.
    Read(&'a str),
    /// Write a key, or every key under a prefix.
    Write(&'a str),
    /// Only an authenticated user (opening a session).
    User,
    /// The role `root`.
    Admin,
}

/// Why [`AuthState::check`] refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Denied {
    /// Auth is enabled and the request names no user.
    #[error("authentication required")]
    Anonymous,
    /// The user does not exist (any more), or its password changed since
    /// the token was issued.
    #[error("user `{0}` does not exist or its token was revoked")]
    Revoked(String),
    /// The user lacks the permission.
    #[error("user `{user}` may not {what}")]
    Missing {
        /// The user.
        user: String,
        /// What was refused, e.g. "write key `app/x`".
        what: String,
    },
}

/// Whether `name` is a valid user or role name: 1 to [`MAX_NAME_BYTES`] of
/// `A-Z a-z 0-9 _ - @` (no `.`, which separates a token's fields).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@'))
}

fn name_ok(name: &str) -> Result<(), AuthError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AuthError::BadName(name.to_string()))
    }
}

impl AuthState {
    /// Whether enforcement is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The number of changes applied so far.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The token-signing secret (empty while disabled).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// One user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = (&String, &User)> {
        self.users.iter()
    }

    /// Every role but the built-in `root`, by name, with its permissions.
    pub fn roles(&self) -> impl Iterator<Item = (&String, &Vec<Permission>)> {
        self.roles.iter()
    }

    /// Whether `user` holds the role `root`.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Applies one change; the new revision, or why nothing changed.
    pub fn apply(&mut self, op: &AuthOp) -> Result<u64, AuthError> {
        let next = self.revision + 1;
        match op {
            AuthOp::AddUser { name, password } => {
                name_ok(name)?;
                if self.users.contains_key(name) {
                    return Err(AuthError::UserExists(name.clone()));
                }
                let user = User {
                    password: password.clone(),
                    roles: BTreeSet::new(),
                    generation: next,
                };
                self.users.insert(name.clone(), user);
            }
            AuthOp::DeleteUser { name } => {
                if !self.users.contains_key(name) {
                    return Err(AuthError::NoSuchUser(name.clone()));
                }
                if self.enabled && name == ROOT {
                    return Err(AuthError::RootLocked);
                }
                self.users.remove(name);
            }
            AuthOp::SetPassword { name, password } => {
                let user = self.user_mut(name)?;
                user.password = password.clone();
                user.generation = next;
            }
            AuthOp::GrantRole { user, role } => {
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::NoSuchRole(role.clone()));
                }
                self.user_mut(user)?.roles.insert(role.clone());
            }
            AuthOp::RevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(AuthError::RootLocked);
                }
                if !self.user_mut(user)?.roles.remove(role) {
                    return Err(AuthError::NoSuchRole(role.clone()));
                }
            }
            AuthOp::AddRole { name } => {
                name_ok(name)?;
                if name == ROOT || self.roles.contains_key(name) {
                    return Err(AuthError::RoleExists(name.clone()));
                }
                self.roles.insert(name.clone(), Vec::new());
            }
            AuthOp::DeleteRole { name } => {
                if name == ROOT {
                    return Err(AuthError::RootRoleBuiltIn);
                }
                if self.roles.remove(name).is_none() {
                    return Err(AuthError::NoSuchRole(name.clone()));
                }
                for user in self.users.values_mut() {
                    user.roles.remove(name);
                }
            }
            AuthOp::GrantPermission { role, permission } => {
                let perms = self.role_mut(role)?;
                perms.retain(|p| p.prefix != permission.prefix);
                perms.push(permission.clone());
                // One order on every member, whatever the grants' order.
                perms.sort_by(|a, b| a.prefix.cmp(&b.prefix));
            }
            AuthOp::RevokePermission { role, prefix } => {
                let perms = self.role_mut(role)?;
                let before = perms.len();
                perms.retain(|p| p.prefix != *prefix);
                if perms.len() == before {
                    return Err(AuthError::NoSuchPermission {
                        role: role.clone(),
                        prefix: prefix.clone(),
                    });
                }
            }
            AuthOp::Enable { secret } => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(AuthError::ShortSecret);
                }
                if !self.is_root(ROOT) {
                    return Err(AuthError::NoRootUser);
                }
                self.enabled = true;
                self.secret = secret.clone();
            }
            AuthOp::Disable => {
                self.enabled = false;
                self.secret.clear();
            }
        }
        self.revision = next;
        Ok(next)
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, AuthError> {
        self.users
            .get_mut(name)
            .ok_or_else(|| AuthError::NoSuchUser(name.to_string()))
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut Vec<Permission>, AuthError> {
        if name == ROOT {
            return Err(AuthError::RootRoleBuiltIn);
        }
        self.roles
            .get_mut(name)
            .ok_or_else(|| AuthError::NoSuchRole(name.to_string()))
    }

    /// Whether `user` (whose token names `generation`) may do `need` now.
    /// Everything is allowed while auth is disabled. A read or write of a
    /// prefix needs one permission covering the whole prefix (the same
    /// test as for a key: the permission's prefix starts the target).
    pub fn check(&self, user: Option<Principal<'_>>, need: Need<'_>) -> Result<(), Denied> {
        if !self.enabled {
            return Ok(());
        }
        let Some((name, generation)) = user else {
            return Err(Denied::Anonymous);
        };
        let Some(u) = self.users.get(name).filter(|u| u.generation == generation) else {
            return Err(Denied::Revoked(name.to_string()));
        };
        if u.roles.contains(ROOT) {
            return Ok(());
        }
        let (target, access, what) = match need {
            Need::User => return Ok(()),
            Need::Admin => {
                return Err(Denied::Missing {
                    user: name.to_string(),
                    what: "administer the cluster (the role `root` is needed)".into(),
                })
            }
            Need::Read(t) => (t, Access::Read, "read"),
            Need::Write(t) => (t, Access::Write, "write"),
        };
        let granted = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .any(|p| p.access.grants(access) && target.starts_with(&p.prefix));
        if granted {
            Ok(())
        } else {
            Err(Denied::Missing {
                user: name.to_string(),
                what: if target.is_empty() {
                    format!("{what} every key")
                } else {
                    format!("{what} `{target}`")
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA";

    fn add_user(a: &mut AuthState, name: &str) -> u64 {
        a.apply(&AuthOp::AddUser {
            name: name.into(),
            password: HASH.into(),
        })
        .unwrap()
    }

    fn grant(a: &mut AuthState, role: &str, prefix: &str, access: Access) {
        a.apply(&AuthOp::GrantPermission {
            role: role.into(),
            permission: Permission {
                prefix: prefix.into(),
                access,
            },
        })
        .unwrap();
    }

    fn with_root() -> AuthState {
        let mut a = AuthState::default();
        add_user(&mut a, ROOT);
        a.apply(&AuthOp::GrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .unwrap();
        a
    }

    fn enable(a: &mut AuthState) {
        a.apply(&AuthOp::Enable {
            secret: vec![7; MIN_SECRET_BYTES],
        })
        .unwrap();
    }

    #[test]
    fn enabling_needs_a_root_user_with_the_root_role() {
        let mut a = AuthState::default();
        let secret = vec![1; MIN_SECRET_BYTES];
        let on = AuthOp::Enable {
            secret: secret.clone(),
        };
        assert_eq!(a.apply(&on), Err(AuthError::NoRootUser));
        add_user(&mut a, ROOT);
        assert_eq!(a.apply(&on), Err(AuthError::NoRootUser));
        a.apply(&AuthOp::GrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .unwrap();
        let short = AuthOp::Enable { secret: vec![1; 8] };
        assert_eq!(a.apply(&short), Err(AuthError::ShortSecret));
        a.apply(&on).unwrap();
        assert!(a.enabled());
        assert_eq!(a.secret(), &secret[..]);
        // Root cannot be locked out while enabled.
        let del = AuthOp::DeleteUser { name: ROOT.into() };
        assert_eq!(a.apply(&del), Err(AuthError::RootLocked));
        let revoke = AuthOp::RevokeRole {
            user: ROOT.into(),
            role: ROOT.into(),
        };
        assert_eq!(a.apply(&revoke), Err(AuthError::RootLocked));
        a.apply(&AuthOp::Disable).unwrap();
        assert!(!a.enabled() && a.secret().is_empty());
        a.apply(&revoke).unwrap();
    }

    #[test]
    fn permissions_cover_keys_and_whole_prefixes() {
        let mut a = with_root();
        add_user(&mut a, "alice");
        a.apply(&AuthOp::AddRole {
            name: "reader".into(),
        })
        .unwrap();
        grant(&mut a, "reader", "app/", Access::Read);
        a.apply(&AuthOp::GrantRole {
            user: "alice".into(),
            role: "reader".into(),
        })
        .unwrap();
        let g = a.user("alice").unwrap().generation;
        let alice = Some(("alice", g));
        // Disabled: everything goes, even for nobody.
        assert_eq!(a.check(None, Need::Write("app/x")), Ok(()));
        enable(&mut a);
        assert_eq!(a.check(None, Need::Read("app/x")), Err(Denied::Anonymous));
        assert_eq!(a.check(alice, Need::Read("app/x")), Ok(()));
        assert_eq!(a.check(alice, Need::Read("app/")), Ok(()));
        assert_eq!(a.check(alice, Need::Read("app/sub/")), Ok(()));
        // A prefix wider than the permission is refused.
        assert!(a.check(alice, Need::Read("ap")).is_err());
        assert!(a.check(alice, Need::Read("")).is_err());
        assert!(a.check(alice, Need::Read("other/x")).is_err());
        assert!(a.check(alice, Need::Write("app/x")).is_err());
        assert!(a.check(alice, Need::Admin).is_err());
        assert_eq!(a.check(alice, Need::User), Ok(()));
        // ReadWrite grants both; a grant on the same prefix replaces.
        grant(&mut a, "reader", "app/", Access::ReadWrite);
        assert_eq!(a.check(alice, Need::Write("app/x")), Ok(()));
        assert_eq!(a.roles().next().unwrap().1.len(), 1);
        a.apply(&AuthOp::RevokePermission {
            role: "reader".into(),
            prefix: "app/".into(),
        })
        .unwrap();
        assert!(a.check(alice, Need::Read("app/x")).is_err());
        // Root may do anything.
        let root = Some((ROOT, a.user(ROOT).unwrap().generation));
        assert_eq!(a.check(root, Need::Admin), Ok(()));
        assert_eq!(a.check(root, Need::Write("")), Ok(()));
    }

    #[test]
    fn a_password_change_or_a_recreated_user_revokes_older_tokens() {
        let mut a = with_root();
        add_user(&mut a, "bob");
        enable(&mut a);
        let g1 = a.user("bob").unwrap().generation;
        assert_eq!(a.check(Some(("bob", g1)), Need::User), Ok(()));
        a.apply(&AuthOp::SetPassword {
            name: "bob".into(),
            password: HASH.into(),
        })
        .unwrap();
        let g2 = a.user("bob").unwrap().generation;
        assert_ne!(g1, g2);
        assert_eq!(
            a.check(Some(("bob", g1)), Need::User),
            Err(Denied::Revoked("bob".into()))
        );
        a.apply(&AuthOp::DeleteUser { name: "bob".into() }).unwrap();
        assert!(a.check(Some(("bob", g2)), Need::User).is_err());
        add_user(&mut a, "bob");
        let g3 = a.user("bob").unwrap().generation;
        assert!(g3 != g1 && g3 != g2);
        assert!(a.check(Some(("bob", g2)), Need::User).is_err());
    }

    #[test]
    fn refused_changes_change_nothing() {
        let mut a = with_root();
        let before = a.clone();
        let refused = [
            AuthOp::AddUser {
                name: ROOT.into(),
                password: HASH.into(),
            },
            AuthOp::AddUser {
                name: "a.b".into(),
                password: HASH.into(),
            },
            AuthOp::AddRole { name: ROOT.into() },
            AuthOp::DeleteRole { name: ROOT.into() },
            AuthOp::DeleteRole { name: "x".into() },
            AuthOp::GrantRole {
                user: ROOT.into(),
                role: "x".into(),
            },
            AuthOp::GrantPermission {
                role: ROOT.into(),
                permission: Permission {
                    prefix: "".into(),
                    access: Access::Read,
                },
            },
            AuthOp::RevokeRole {
                user: "nobody".into(),
                role: ROOT.into(),
            },
        ];
        for op in &refused {
            assert!(a.apply(op).is_err(), "{op:?}");
        }
        assert_eq!(a, before);
    }

    #[test]
    fn deleting_a_role_takes_it_from_every_user() {
        let mut a = with_root();
        add_user(&mut a, "c");
        a.apply(&AuthOp::AddRole { name: "r".into() }).unwrap();
        a.apply(&AuthOp::GrantRole {
            user: "c".into(),
            role: "r".into(),
        })
        .unwrap();
        a.apply(&AuthOp::DeleteRole { name: "r".into() }).unwrap();
        assert!(a.user("c").unwrap().roles.is_empty());
    }
}

/// The auth state inside the key-value state machine: checks at apply
/// time, the image, old commands.
#[cfg(test)]
mod apply_tests {
    use super::*;
    use crate::kv::{Command, KvStore, Op, OpResult};
    use crate::replica::{Query, QueryResult};
    use crate::types::{Entry, Payload};

    struct Log {
        kv: KvStore,
        index: u64,
    }

    impl Log {
        fn new() -> Self {
            Log {
                kv: KvStore::new(),
                index: 0,
            }
        }

        fn apply(&mut self, op: Op) -> OpResult {
            self.index += 1;
            let entry = Entry {
                term: 1,
                index: self.index,
                payload: Payload::command(Command {
                    client_id: 0,
                    seq: 0,
                    op,
                }),
            };
            self.kv.apply(&entry).result.unwrap()
        }

        fn auth(&mut self, change: AuthOp) -> OpResult {
            self.apply(Op::Auth(change))
        }

        fn generation(&self, user: &str) -> u64 {
            self.kv.auth().user(user).unwrap().generation
        }
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn as_user(user: &str, generation: u64, op: Op) -> Op {
        Op::AsUser {
            user: user.into(),
            generation,
            op: Box::new(op),
        }
    }

    /// root (role root), alice (role `app`: `access` on `app/`), enabled.
    fn setup(log: &mut Log, access: Access) {
        for name in [ROOT, "alice"] {
            let added = log.auth(AuthOp::AddUser {
                name: name.into(),
                password: "h".into(),
            });
            assert!(matches!(added, OpResult::AuthChanged { .. }), "{added:?}");
        }
        log.auth(AuthOp::GrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        });
        log.auth(AuthOp::AddRole { name: "app".into() });
        log.auth(AuthOp::GrantPermission {
            role: "app".into(),
            permission: Permission {
                prefix: "app/".into(),
                access,
            },
        });
        log.auth(AuthOp::GrantRole {
            user: "alice".into(),
            role: "app".into(),
        });
        let on = log.auth(AuthOp::Enable {
            secret: vec![9; MIN_SECRET_BYTES],
        });
        assert!(matches!(on, OpResult::AuthChanged { .. }), "{on:?}");
    }

    #[test]
    fn a_write_without_permission_is_refused_and_changes_nothing() {
        let mut log = Log::new();
        // Disabled: the wrapper is ignored.
        assert_eq!(
            log.apply(as_user("nobody", 0, put("app/x", "1"))),
            OpResult::Put { prev: None }
        );
        setup(&mut log, Access::Read);
        let g = log.generation("alice");
        let refused = log.apply(as_user("alice", g, put("app/x", "2")));
        assert!(
            matches!(refused, OpResult::PermissionDenied(Denied::Missing { .. })),
            "{refused:?}"
        );
        // Anonymous writes are refused once enabled.
        assert!(matches!(
            log.apply(put("app/x", "3")),
            OpResult::PermissionDenied(Denied::Anonymous)
        ));
        assert_eq!(log.kv.get("app/x"), Some("1"));
        // Reads: the key and the whole prefix, not a wider one.
        let read = |kv: &KvStore, q: Query| {
            Query::AsUser {
                user: "alice".into(),
                generation: g,
                query: Box::new(q),
            }
            .run(kv)
        };
        assert!(matches!(
            read(&log.kv, Query::Get("app/x".into())),
            QueryResult::Value(Some(_))
        ));
        let list = |prefix: &str| Query::List {
            prefix: prefix.into(),
            after: None,
            limit: 10,
        };
        assert!(matches!(
            read(&log.kv, list("app/")),
            QueryResult::List { .. }
        ));
        assert!(matches!(
            read(&log.kv, list("")),
            QueryResult::PermissionDenied(_)
        ));
        assert!(matches!(
            Query::Get("app/x".into()).run(&log.kv),
            QueryResult::PermissionDenied(Denied::Anonymous)
        ));
        // Only root changes the rules.
        let change = AuthOp::AddRole { name: "x".into() };
        assert!(matches!(
            log.apply(as_user("alice", g, Op::Auth(change.clone()))),
            OpResult::PermissionDenied(_)
        ));
        assert!(matches!(
            log.auth(change.clone()),
            OpResult::PermissionDenied(Denied::Anonymous)
        ));
        let root = log.generation(ROOT);
        assert!(matches!(
            log.apply(as_user(ROOT, root, Op::Auth(change))),
            OpResult::AuthChanged { .. }
        ));
        // No nesting.
        let nested = as_user("alice", g, put("app/y", "1"));
        assert!(matches!(
            log.apply(as_user(ROOT, root, nested)),
            OpResult::PermissionDenied(_)
        ));
        assert_eq!(log.kv.get("app/y"), None);
    }

    /// The check is made when the entry is applied: a permission revoked by
    /// an entry between the write's proposal and its application refuses
    /// the write on every member, whatever the proposer knew.
    #[test]
    fn a_permission_revoked_between_propose_and_apply_refuses_the_write() {
        let mut log = Log::new();
        setup(&mut log, Access::ReadWrite);
        let g = log.generation("alice");
        assert_eq!(
            log.apply(as_user("alice", g, put("app/x", "1"))),
            OpResult::Put { prev: None }
        );
        // Proposed while alice may write: then the revocation commits
        // first, then the write.
        let write = as_user("alice", g, put("app/x", "2"));
        let root = log.generation(ROOT);
        log.apply(as_user(
            ROOT,
            root,
            Op::Auth(AuthOp::RevokePermission {
                role: "app".into(),
                prefix: "app/".into(),
            }),
        ));
        assert!(matches!(log.apply(write), OpResult::PermissionDenied(_)));
        assert_eq!(log.kv.get("app/x"), Some("1"));
        // A password change between proposal and apply: the old generation
        // is refused.
        log.auth_as_root(AuthOp::GrantPermission {
            role: "app".into(),
            permission: Permission {
                prefix: "app/".into(),
                access: Access::ReadWrite,
            },
        });
        let write = as_user("alice", g, put("app/x", "3"));
        log.auth_as_root(AuthOp::SetPassword {
            name: "alice".into(),
            password: "h2".into(),
        });
        assert!(matches!(
            log.apply(write),
            OpResult::PermissionDenied(Denied::Revoked(_))
        ));
        let g2 = log.generation("alice");
        assert_eq!(
            log.apply(as_user("alice", g2, put("app/x", "4"))),
            OpResult::Put {
                prev: Some("1".into())
            }
        );
    }

    impl Log {
        fn auth_as_root(&mut self, change: AuthOp) -> OpResult {
            let root = self.generation(ROOT);
            let r = self.apply(as_user(ROOT, root, Op::Auth(change)));
            assert!(matches!(r, OpResult::AuthChanged { .. }), "{r:?}");
            r
        }
    }

    #[test]
    fn a_write_only_user_does_not_learn_the_value_it_replaced() {
        let mut log = Log::new();
        setup(&mut log, Access::Write);
        let g = log.generation("alice");
        log.auth_as_root(AuthOp::GrantPermission {
            role: "app".into(),
            permission: Permission {
                prefix: "app/".into(),
                access: Access::Write,
            },
        });
        log.apply(as_user(ROOT, log.generation(ROOT), put("app/x", "secret")));
        assert_eq!(
            log.apply(as_user("alice", g, put("app/x", "2"))),
            OpResult::Put { prev: None }
        );
        assert_eq!(log.kv.get("app/x"), Some("2"));
    }

    #[test]
    fn the_auth_state_is_in_the_image_and_format_4_reads_as_disabled() {
        let mut log = Log::new();
        log.apply(put("a", "1"));
        // A format-4 image is a format-5 one without the trailing auth
        // state (a default one encodes as five zero bytes).
        let image = log.kv.snapshot();
        assert_eq!(image[0], 5);
        assert_eq!(&image[image.len() - 5..], &[0; 5]);
        let mut v4 = image[..image.len() - 5].to_vec();
        v4[0] = 4;
        assert_eq!(KvStore::restore(&v4).unwrap(), log.kv);
        setup(&mut log, Access::Read);
        let image = log.kv.snapshot();
        let back = KvStore::restore(&image).unwrap();
        assert_eq!(back, log.kv);
        assert!(back.auth().enabled());
        assert_eq!(back.snapshot(), image, "deterministic");
    }

    #[test]
    fn the_new_variants_come_after_the_old_ones() {
        // Commands in old logs keep their encoding: the auth variants are
        // appended (Op: DeletePrefix is 6, Auth 7, AsUser 8).
        let bytes = postcard::to_stdvec(&Op::Auth(AuthOp::Disable)).unwrap();
        assert_eq!(bytes, [7, 10]);
        let bytes = postcard::to_stdvec(&as_user("u", 1, Op::Register)).unwrap();
        assert_eq!(bytes, [8, 1, b'u', 1, 3]);
    }
}
