//! The cluster as this node sees it: `GET /status`, `GET /cluster` (every
//! member's status, asked for in parallel), and `/cluster/members`: the
//! configuration and the membership changes (add a learner, promote,
//! remove). Changes are token-protected like the admin routes and carried
//! out by the leader; a follower forwards them. Each answers with the
//! configuration once the change is committed (for a change of voters:
//! once the joint phase is over).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::wire::{
    AddMemberRequest, ClusterResponse, MemberInfo, MemberRole, MemberStatus, MembersResponse,
    StatusResponse, HEADER_FORWARDED,
};
use raft_core::{ConfChange, ConfChangeError, Index, Membership, NodeId};
use serde::Deserialize;

use super::error::{error, json_body, no_leader, node_error};
use super::forward::{forward, path_and_query, ForwardError, ForwardRequest};
use super::state::{Attempts, Shared};
use crate::error_chain::error_chain;
use crate::identity::hex;
use crate::node::NodeError;

pub(super) async fn status(State(s): State<Shared>) -> Response {
    match s.node.status().await {
        Ok(st) => Json(st).into_response(),
        Err(e) => node_error(&s, e),
    }
}

pub(super) async fn cluster(State(s): State<Shared>) -> Response {
    let local = match s.node.status().await {
        Ok(st) => st,
        Err(e) => return node_error(&s, e),
    };
    let urls = s.directory.urls();
    let mut ids: Vec<NodeId> = local
        .members
        .iter()
        .chain(&local.learners)
        .chain(&local.outgoing)
        .chain(urls.keys())
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tasks = tokio::task::JoinSet::new();
    for &id in &ids {
        if id == s.id {
            continue;
        }
        let Some(url) = urls.get(&id).cloned() else {
            continue;
        };
        let http = s.http.clone();
        tasks.spawn(async move {
            let r = async {
                let resp = http
                    .get(format!("{url}/status"))
                    .timeout(Duration::from_millis(1000))
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("answered {}", resp.status()));
                }
                resp.json::<StatusResponse>()
                    .await
                    .map_err(|e| error_chain(&e))
            }
            .await;
            (id, r)
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(Ok((id, r))) = tasks.join_next().await {
        answers.insert(id, r);
    }
    let leader = local.leader;
    let members = ids
        .into_iter()
        .map(|id| {
            let url = urls.get(&id).cloned().unwrap_or_default();
            if id == s.id {
                return MemberStatus {
                    id,
                    url,
                    status: Some(local.clone()),
                    error: None,
                };
            }
            match answers.remove(&id) {
                Some(Ok(st)) => MemberStatus {
                    id,
                    url,
                    status: Some(st),
                    error: None,
                },
                Some(Err(e)) => MemberStatus {
                    id,
                    url,
                    status: None,
                    error: Some(e),
                },
                None => MemberStatus {
                    id,
                    url,
                    status: None,
                    error: Some("no address known".into()),
                },
            }
        })
        .collect();
    Json(ClusterResponse {
        served_by: s.id,
        leader,
        members,
    })
    .into_response()
}

/// The wire shape of a configuration.
pub fn members_response(
    cluster_id: u64,
    leader: Option<NodeId>,
    m: &Membership,
    index: Index,
    url_of: impl Fn(NodeId) -> Option<String>,
) -> MembersResponse {
    let members = m
        .ids()
        .into_iter()
        .map(|id| {
            let in_new = m.voters.contains(&id);
            let in_old = m.outgoing.contains(&id);
            MemberInfo {
                id,
                url: url_of(id).unwrap_or_default(),
                role: if m.is_voter(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
                auto_promote: m.auto_promote.contains(&id),
                leaving: m.is_joint() && in_old && !in_new,
                joining: m.is_joint() && in_new && !in_old,
            }
        })
        .collect();
    MembersResponse {
        cluster_id: hex(cluster_id),
        leader,
        config_index: index,
        joint: m.is_joint(),
        members,
    }
}

/// `GET /cluster/members`: this node's view of the configuration.
pub async fn list(State(s): State<Shared>) -> Response {
    let (m, index) = s.directory.membership();
    let leader = s.node.view().leader;
    Json(members_response(
        s.directory.identity.cluster_id,
        leader,
        &m,
        index,
        |id| s.directory.url(id),
    ))
    .into_response()
}

/// `POST /cluster/members` `{"id","url","learner","force"}`.
pub async fn add(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: AddMemberRequest = match json_body(
        &headers,
        &body,
        r#"{"id": <node id>, "url": "http://host:port", "learner": false}"#,
    ) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if req.id == 0 {
        return error(StatusCode::BAD_REQUEST, "node id 0 is reserved");
    }
    let url = match crate::config::normalize_url(&req.url) {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The members could not reach a URL of the other scheme.
    if let Err(e) = crate::config::check_scheme("member URL", &url, s.settings.tls.is_some()) {
        return error(StatusCode::BAD_REQUEST, e.0);
    }
    let change = ConfChange::AddLearner {
        id: req.id,
        address: url,
        promote: !req.learner,
    };
    let fwd = ForwardRequest::new(Method::POST, path_and_query(&uri), &headers, body);
    change_membership(&s, change, req.force, &headers, fwd).await
}

/// `?force=true` on a removal or promotion.
#[derive(Debug, Deserialize)]
pub struct ForceParam {
    #[serde(default)]
    force: bool,
}

/// `POST /cluster/members/{id}/promote`.
pub async fn promote(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<NodeId>,
    Query(p): Query<ForceParam>,
    headers: HeaderMap,
) -> Response {
    let fwd = ForwardRequest::new(Method::POST, path_and_query(&uri), &headers, Bytes::new());
    change_membership(&s, ConfChange::Promote { id }, p.force, &headers, fwd).await
}

/// `DELETE /cluster/members/{id}`.
pub async fn remove(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<NodeId>,
    Query(p): Query<ForceParam>,
    headers: HeaderMap,
) -> Response {
    let fwd = ForwardRequest::new(Method::DELETE, path_and_query(&uri), &headers, Bytes::new());
    change_membership(&s, ConfChange::Remove { id }, p.force, &headers, fwd).await
}

/// Proposes `change` here if this node leads, else forwards it once to the
/// leader; waits for a leader when none is known.
async fn change_membership(
    s: &Shared,
    change: ConfChange,
    force: bool,
    headers: &HeaderMap,
    fwd: ForwardRequest,
) -> Response {
    let mut at = Attempts::new(s);
    loop {
        at.pause().await;
        let outcome =
            tokio::time::timeout_at(at.deadline, s.node.change_membership(change.clone(), force))
                .await;
        let err = match outcome {
            Err(_) => {
                return s.unavailable(format!(
                    "timed out after {} ms waiting for the membership change to commit; \
                     it may still take effect: check GET /cluster/members",
                    s.settings.request_timeout.as_millis()
                ))
            }
            Ok(Ok((m, index))) => {
                tracing::info!(
                    ?change,
                    force,
                    index,
                    voters = ?m.voters,
                    learners = ?m.learners,
                    "admin: membership change committed"
                );
                let leader = s.node.view().leader;
                return Json(members_response(
                    s.directory.identity.cluster_id,
                    leader,
                    &m,
                    index,
                    |id| s.directory.url(id),
                ))
                .into_response();
            }
            Ok(Err(e)) => e,
        };
        match err {
            NodeError::NotLeader {
                leader: Some(leader),
            } if leader != s.id && !headers.contains_key(HEADER_FORWARDED) => {
                let Some(url) = s.url_of(leader) else {
                    return s.unavailable(format!("the leader {leader} has no known address"));
                };
                return match forward(&s.forwarder, &s.forward_slots, &url, &fwd, at.deadline).await
                {
                    Ok(resp) => resp,
                    Err(ForwardError::NotSent(e) | ForwardError::Unknown(e)) => {
                        s.unavailable(format!("cannot reach the leader (node {leader}): {e}"))
                    }
                };
            }
            NodeError::NotLeader { leader: None } => {
                if !at.wait_for_leader(&s.node, None).await {
                    return no_leader(s);
                }
            }
            // A new leader commits an entry of its term first: moments.
            NodeError::ConfChange(ConfChangeError::LeaderNotReady) => {}
            NodeError::ConfChange(e) => return conf_change_error(e),
            NodeError::LeadershipChanged => {
                return s.unavailable(
                    "leadership changed before the membership change committed; it was not \
                     applied: check GET /cluster/members and retry",
                )
            }
            e => return node_error(s, e),
        }
        if tokio::time::Instant::now() >= at.deadline {
            return s.unavailable("no leader could take the membership change in time; retry");
        }
    }
}

fn conf_change_error(e: ConfChangeError) -> Response {
    let status = match &e {
        ConfChangeError::InProgress | ConfChangeError::AlreadyMember(_) => StatusCode::CONFLICT,
        ConfChangeError::NotLearner(_) => StatusCode::CONFLICT,
        ConfChangeError::NotMember(_) => StatusCode::NOT_FOUND,
        ConfChangeError::NoQuorum { .. } => StatusCode::PRECONDITION_FAILED,
        ConfChangeError::LeaderNotReady => StatusCode::SERVICE_UNAVAILABLE,
        ConfChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    let hint = match &e {
        ConfChangeError::NoQuorum { .. } => " (add force=true to do it anyway)",
        _ => "",
    };
    error(status, format!("{e}{hint}"))
}
