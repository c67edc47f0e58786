//! Text and JSON rendering of answers, and writing them to stdout.

use std::io::{self, Write};

use raft_core::wire::{ClusterResponse, ListResponse, MemberRole, MembersResponse, StatusResponse};
use raft_core::NodeId;
use serde::Serialize;

use crate::error::{one_line, CliError};

/// Writes `text` to stdout. A closed pipe (`| head`) is not an error.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// Writes `value` as one line of JSON to stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string(value).map_err(|e| CliError::Output(e.into()))?;
    text.push('\n');
    print(&text)
}

/// Writes one informational line to stderr.
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// `list` as `key<TAB>value` lines.
pub fn list_text(list: &ListResponse) -> String {
    let mut out = String::new();
    for item in &list.items {
        out.push_str(&item.key);
        out.push('\t');
        out.push_str(&item.value);
        out.push('\n');
    }
    out
}

/// `status` as aligned `name: value` lines, plus the followers' progress on
/// the leader. The cluster id, the learners and (in a joint phase) the
/// outgoing voters are shown when there are any.
pub fn status_text(s: &StatusResponse) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    let mut lines = vec![("id", s.id.to_string()), ("url", s.url.clone())];
    if !s.cluster_id.is_empty() {
        lines.push(("cluster id", s.cluster_id.clone()));
    }
    lines.extend([
        ("role", s.role.to_string()),
        ("term", s.term.to_string()),
        ("leader", opt(s.leader)),
        ("voted for", opt(s.vote)),
        ("last index", s.last_index.to_string()),
        ("commit index", s.commit_index.to_string()),
        ("applied index", s.applied_index.to_string()),
        ("snapshot index", s.snapshot_index.to_string()),
        ("members", id_list(&s.members)),
    ]);
    if !s.outgoing.is_empty() {
        lines.push((
            "outgoing",
            format!("{} (joint phase)", id_list(&s.outgoing)),
        ));
    }
    if !s.learners.is_empty() {
        lines.push(("learners", id_list(&s.learners)));
    }
    lines.push(("keys", s.keys.to_string()));
    let mut out = String::new();
    for (name, value) in lines {
        out.push_str(&format!("{:<15} {}\n", format!("{name}:"), value));
    }
    if let Some(followers) = &s.followers {
        out.push_str("followers:\n");
        let mut rows = vec![row(&[
            "ID",
            "MATCH",
            "NEXT",
            "STATE",
            "LAG",
            "LAST CONTACT",
        ])];
        for f in followers {
            rows.push(vec![
                f.id.to_string(),
                f.match_index.to_string(),
                f.next_index.to_string(),
                f.state.clone(),
                f.lag.to_string(),
                format!("{}ms", f.ms_since_contact),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out
}

/// `cluster` as a table: one row per member, "unreachable" for members that
/// did not answer.
pub fn cluster_text(c: &ClusterResponse) -> String {
    let leader_status = c
        .leader
        .and_then(|id| c.members.iter().find(|m| m.id == id))
        .and_then(|m| m.status.as_ref());
    let any_error = c.members.iter().any(|m| m.status.is_none());
    let mut header = vec!["ID", "URL", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"];
    if any_error {
        header.push("ERROR");
    }
    let mut rows = vec![row(&header)];
    for m in &c.members {
        let mut cells = vec![m.id.to_string(), m.url.clone()];
        match &m.status {
            Some(s) => {
                let lag = match leader_status {
                    Some(l) if l.id == s.id => "0".to_string(),
                    Some(l) => l
                        .followers
                        .iter()
                        .flatten()
                        .find(|f| f.id == s.id)
                        .map(|f| f.lag)
                        .unwrap_or_else(|| l.last_index.saturating_sub(s.last_index))
                        .to_string(),
                    None => "-".to_string(),
                };
                cells.extend([
                    s.role.to_string(),
                    s.term.to_string(),
                    s.commit_index.to_string(),
                    s.applied_index.to_string(),
                    lag,
                ]);
                if any_error {
                    cells.push(String::new());
                }
            }
            None => {
                cells.extend(["unreachable", "-", "-", "-", "-"].map(String::from));
                cells.push(one_line(m.error.as_deref().unwrap_or("no answer")));
            }
        }
        rows.push(cells);
    }
    let leader = match c.leader {
        Some(id) => format!("leader: {id}"),
        None => "leader: none".to_string(),
    };
    format!("{leader}\n{}", table(&rows, ""))
}

/// `member list` and the answer to a membership change: a header line
/// (cluster id, leader, the configuration's log index, whether a change is
/// in its joint phase), then one row per member with `*` on the leader's.
pub fn members_text(m: &MembersResponse) -> String {
    let cluster = if m.cluster_id.is_empty() {
        "unknown"
    } else {
        m.cluster_id.as_str()
    };
    let leader = m
        .leader
        .map_or_else(|| "none".to_string(), |id| id.to_string());
    let joint = if m.joint {
        "yes (old and new voters both decide)"
    } else {
        "no"
    };
    let mut rows = vec![row(&["ID", "URL", "ROLE", "LEADER"])];
    for member in &m.members {
        let mut role = match member.role {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
        .to_string();
        let flags: Vec<&str> = [
            (member.auto_promote, "auto-promote"),
            (member.joining, "joining"),
            (member.leaving, "leaving"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
        if !flags.is_empty() {
            role.push_str(&format!(" ({})", flags.join(", ")));
        }
        let url = if member.url.is_empty() {
            "-".to_string()
        } else {
            one_line(&member.url)
        };
        let is_leader = if m.leader == Some(member.id) { "*" } else { "" };
        rows.push(vec![
            member.id.to_string(),
            url,
            role,
            is_leader.to_string(),
        ]);
    }
    format!(
        "cluster: {cluster}  leader: {leader}  config index: {}  joint phase: {joint}\n{}",
        m.config_index,
        table(&rows, "")
    )
}

/// Ids as `1, 2, 3`.
fn id_list(ids: &[NodeId]) -> String {
    ids.iter()
        .map(NodeId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns separated by two spaces; `indent` before each row.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(indent);
        for (i, cell) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::wire::{FollowerStatus, KeyValue, MemberStatus};
    use raft_core::Role;

    fn status(id: u64, role: Role, last: u64) -> StatusResponse {
        StatusResponse {
            id,
            url: format!("http://127.0.0.1:300{id}"),
            role,
            term: 4,
            leader: Some(1),
            vote: Some(1),
            last_index: last,
            commit_index: last,
            applied_index: last,
            snapshot_index: 0,
            members: vec![1, 2, 3],
            learners: vec![],
            outgoing: vec![],
            cluster_id: String::new(),
            keys: 7,
            followers: None,
        }
    }

    #[test]
    fn cluster_table_has_lag_and_unreachable_rows() {
        let mut leader = status(1, Role::Leader, 50);
        leader.followers = Some(vec![FollowerStatus {
            id: 2,
            match_index: 45,
            next_index: 46,
            state: "replicate".into(),
            lag: 5,
            ticks_since_contact: 1,
            ms_since_contact: 10,
            silent: false,
        }]);
        let c = ClusterResponse {
            served_by: 1,
            leader: Some(1),
            members: vec![
                MemberStatus {
                    id: 1,
                    url: leader.url.clone(),
                    status: Some(leader),
                    error: None,
                },
                MemberStatus {
                    id: 2,
                    url: "http://127.0.0.1:3002".into(),
                    status: Some(status(2, Role::Follower, 45)),
                    error: None,
                },
                MemberStatus {
                    id: 3,
                    url: "http://127.0.0.1:3003".into(),
                    status: None,
                    error: Some("connection\nrefused".into()),
                },
            ],
        };
        let text = cluster_text(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "leader: 1");
        assert!(lines[1].starts_with("ID  URL"), "{text}");
        assert!(lines[1].ends_with("LAG  ERROR"), "{text}");
        let row2: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            row2,
            [
                "2",
                "http://127.0.0.1:3002",
                "follower",
                "4",
                "45",
                "45",
                "5"
            ]
        );
        assert!(lines[4].contains("unreachable"));
        assert!(lines[4].ends_with("connection refused"));
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn status_text_lists_followers_on_the_leader() {
        let mut s = status(1, Role::Leader, 3);
        assert!(!status_text(&s).contains("followers"));
        s.followers = Some(vec![]);
        let text = status_text(&s);
        assert!(text.contains("role:           leader"), "{text}");
        assert!(text.contains("members:        1, 2, 3"), "{text}");
        assert!(text.contains("followers:\n  ID  MATCH"), "{text}");
        assert!(!text.contains("learners"), "{text}");
        assert!(!text.contains("outgoing"), "{text}");
        assert!(!text.contains("cluster id"), "{text}");
    }

    #[test]
    fn status_text_shows_learners_outgoing_voters_and_cluster_id() {
        let mut s = status(2, Role::Follower, 3);
        s.members = vec![1, 2, 4];
        s.outgoing = vec![1, 2, 3];
        s.learners = vec![5];
        s.cluster_id = "00c0ffee00c0ffee".into();
        let text = status_text(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "cluster id:     00c0ffee00c0ffee", "{text}");
        let members = lines
            .iter()
            .position(|l| l.starts_with("members:"))
            .unwrap();
        assert_eq!(lines[members], "members:        1, 2, 4");
        assert_eq!(lines[members + 1], "outgoing:       1, 2, 3 (joint phase)");
        assert_eq!(lines[members + 2], "learners:       5");
        assert_eq!(lines[members + 3], "keys:           7");
    }

    #[test]
    fn members_table_marks_roles_and_the_leader() {
        use raft_core::wire::MemberInfo;
        let member = |id: u64, role| MemberInfo {
            id,
            url: format!("http://127.0.0.1:300{id}"),
            role,
            auto_promote: false,
            leaving: false,
            joining: false,
        };
        let mut m = MembersResponse {
            cluster_id: "00c0ffee00c0ffee".into(),
            leader: Some(2),
            config_index: 12,
            joint: true,
            members: vec![
                member(1, MemberRole::Voter),
                member(2, MemberRole::Voter),
                member(3, MemberRole::Voter),
                member(4, MemberRole::Voter),
                member(5, MemberRole::Learner),
                member(6, MemberRole::Learner),
            ],
        };
        m.members[2].leaving = true;
        m.members[3].joining = true;
        m.members[4].auto_promote = true;
        m.members[5].url = String::new();
        let text = members_text(&m);
        assert_eq!(
            text,
            "cluster: 00c0ffee00c0ffee  leader: 2  config index: 12  \
             joint phase: yes (old and new voters both decide)\n\
             ID  URL                    ROLE                    LEADER\n\
             1   http://127.0.0.1:3001  voter\n\
             2   http://127.0.0.1:3002  voter                   *\n\
             3   http://127.0.0.1:3003  voter (leaving)\n\
             4   http://127.0.0.1:3004  voter (joining)\n\
             5   http://127.0.0.1:3005  learner (auto-promote)\n\
             6   -                      learner\n"
        );
        m.joint = false;
        m.leader = None;
        m.cluster_id = String::new();
        let header = members_text(&m).lines().next().unwrap().to_string();
        assert_eq!(
            header,
            "cluster: unknown  leader: none  config index: 12  joint phase: no"
        );
    }

    #[test]
    fn list_is_tab_separated() {
        let list = ListResponse {
            items: vec![
                KeyValue {
                    key: "a".into(),
                    value: "1".into(),
                    mod_index: None,
                },
                KeyValue {
                    key: "b".into(),
                    value: "2".into(),
                    mod_index: None,
                },
            ],
            truncated: false,
            continue_token: None,
        };
        assert_eq!(list_text(&list), "a\t1\nb\t2\n");
    }
}
