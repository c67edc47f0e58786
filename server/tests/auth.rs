//! Users, roles and permissions against a 3-process cluster: the rules are
//! in the replicated state, so every member enforces them, a token from one
//! member works on another, and a user without write permission gets 403
//! through the leader and through a follower with the key unchanged.

mod support;

use std::time::Duration;

use raft_core::wire::{AuthStatus, ErrorBody, KeyValue, TokenResponse, UserInfo};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Cluster, ClusterOptions};

const CLUSTER_TOKEN: &str = "cluster-s3cret";
const WAIT: Duration = Duration::from_secs(20);

struct Api<'a> {
    c: &'a Cluster,
}

impl Api<'_> {
    /// A request to node `id`, with the cluster token when `cluster` and a
    /// bearer token when given; the status and the JSON body.
    async fn call(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        bearer: Option<&str>,
        cluster: bool,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = self
            .c
            .http()
            .request(method.clone(), format!("{}{path}", self.c.url(id)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if cluster {
            req = req.header("x-raft-cluster-token", CLUSTER_TOKEN);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    /// A management call before auth is enabled (cluster token); must be 200.
    async fn manage(&self, id: u64, method: Method, path: &str, body: Option<serde_json::Value>) {
        let (status, body) = self.call(id, method.clone(), path, body, None, true).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
    }

    async fn token(&self, id: u64, user: &str, password: &str) -> Result<String, StatusCode> {
        let (status, body) = self
            .call(
                id,
                Method::POST,
                "/auth/token",
                Some(json!({ "user": user, "password": password })),
                None,
                false,
            )
            .await;
        if status != StatusCode::OK {
            return Err(status);
        }
        let t: TokenResponse = serde_json::from_value(body).expect("token response");
        Ok(t.token)
    }

    async fn put(&self, id: u64, key: &str, value: &str, bearer: Option<&str>) -> StatusCode {
        let (status, body) = self
            .call(
                id,
                Method::PUT,
                &format!("/key/{key}"),
                Some(json!({ "value": value })),
                bearer,
                false,
            )
            .await;
        if !status.is_success() {
            let e: ErrorBody = serde_json::from_value(body.clone())
                .unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
            assert!(!e.error.is_empty());
        }
        status
    }

    async fn get(&self, id: u64, key: &str, bearer: Option<&str>) -> (StatusCode, Option<String>) {
        let (status, body) = self
            .call(id, Method::GET, &format!("/key/{key}"), None, bearer, false)
            .await;
        let value = serde_json::from_value::<KeyValue>(body)
            .ok()
            .map(|kv| kv.value);
        (status, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_and_permissions_are_enforced_by_every_member() {
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            token: Some(CLUSTER_TOKEN.into()),
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = c.wait_for_leader(WAIT).await;
    let followers: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    let api = Api { c: &c };

    // Before auth is enabled: management needs the cluster token.
    let (status, _) = api
        .call(leader, Method::GET, "/auth/users", None, None, false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.put(leader, "app/x", "orig", None).await, StatusCode::OK);

    // root, a read-only user on app/ and a read-write one; some through a
    // follower (forwarded to the leader).
    for (user, pw) in [("root", "rootpw"), ("alice", "alicepw"), ("bob", "bobpw")] {
        let body = json!({ "name": user, "password": pw });
        api.manage(f1, Method::POST, "/auth/users", Some(body))
            .await;
    }
    // Enabling is refused until root holds the role root.
    let (status, body) = api
        .call(leader, Method::POST, "/auth/enable", None, None, true)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    api.manage(leader, Method::PUT, "/auth/users/root/roles/root", None)
        .await;
    for (role, access) in [("app-reader", "read"), ("app-writer", "readwrite")] {
        api.manage(
            leader,
            Method::POST,
            "/auth/roles",
            Some(json!({ "name": role })),
        )
        .await;
        let grant = json!({ "prefix": "app/", "access": access });
        let path = format!("/auth/roles/{role}/permissions");
        api.manage(leader, Method::POST, &path, Some(grant)).await;
    }
    api.manage(
        leader,
        Method::PUT,
        "/auth/users/alice/roles/app-reader",
        None,
    )
    .await;
    api.manage(
        leader,
        Method::PUT,
        "/auth/users/bob/roles/app-writer",
        None,
    )
    .await;
    // Enabled through a follower.
    api.manage(f2, Method::POST, "/auth/enable", None).await;
    for id in c.ids() {
        c.wait_until(WAIT, "every member has auth enabled", || async {
            let (_, body) = api
                .call(id, Method::GET, "/auth/status", None, None, false)
                .await;
            serde_json::from_value::<AuthStatus>(body).is_ok_and(|s| s.enabled)
        })
        .await;
    }

    // No token, a bad token, a wrong password: 401.
    assert_eq!(
        api.put(leader, "app/x", "anon", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.put(f1, "app/x", "anon", Some("alice.1.2.AAAA")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.get(f1, "app/x", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.token(leader, "alice", "wrong").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        api.token(leader, "nobody", "wrong").await,
        Err(StatusCode::UNAUTHORIZED)
    );

    // A token from one member works on every other.
    let alice = api
        .token(f2, "alice", "alicepw")
        .await
        .expect("alice's token");
    let root = api.token(f1, "root", "rootpw").await.expect("root's token");
    let bob = api
        .token(leader, "bob", "bobpw")
        .await
        .expect("bob's token");

    // Read-only on app/: 403 on a write through the leader and through a
    // follower, and the key is unchanged on every member.
    assert_eq!(
        api.put(leader, "app/x", "alice", Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.put(f1, "app/x", "alice", Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    let (status, body) = api
        .call(f2, Method::DELETE, "/key/app/x", None, Some(&alice), false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The dashboard's feeds need a token too, also taken as `?token=`.
    let (status, body) = api.call(f1, Method::GET, "/log", None, None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = api
        .call(
            f1,
            Method::GET,
            &format!("/log?token={alice}"),
            None,
            None,
            false,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A prefix delete and a conditional write are checked alike.
    let (status, body) = api
        .call(
            f1,
            Method::DELETE,
            "/keys?prefix=app/",
            None,
            Some(&alice),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let conditional = c
        .http()
        .put(format!("{}/key/app/x", c.url(leader)))
        .bearer_auth(&alice)
        .header("if-match", "*")
        .json(&serde_json::json!({ "value": "alice-if" }))
        .send()
        .await
        .expect("conditional put");
    assert_eq!(conditional.status(), StatusCode::FORBIDDEN);
    for id in c.ids() {
        assert_eq!(
            api.get(id, "app/x", Some(&alice)).await,
            (StatusCode::OK, Some("orig".to_string())),
            "alice reads app/x on node {id}"
        );
    }
    // Another prefix: 403 to read and to write; a list must stay inside
    // the permission.
    assert_eq!(
        api.get(leader, "other/y", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.put(f1, "other/y", "v", Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    let list = |prefix: &'static str| {
        let alice = alice.clone();
        let api = &api;
        async move {
            api.call(
                f1,
                Method::GET,
                &format!("/keys?prefix={prefix}"),
                None,
                Some(&alice),
                false,
            )
            .await
            .0
        }
    };
    assert_eq!(list("app/").await, StatusCode::OK);
    assert_eq!(list("").await, StatusCode::FORBIDDEN);

    // A user with write permission writes, through a follower too.
    assert_eq!(
        api.put(f2, "app/x", "bob", Some(&bob)).await,
        StatusCode::OK
    );
    assert_eq!(
        api.get(leader, "app/x", Some(&root)).await.1.as_deref(),
        Some("bob")
    );

    // Admin routes: the cluster token alone no longer opens them; root does.
    let (status, _) = api
        .call(leader, Method::POST, "/admin/snapshot", None, None, true)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            leader,
            Method::POST,
            "/admin/snapshot",
            None,
            Some(&alice),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .call(
            leader,
            Method::POST,
            "/admin/snapshot",
            None,
            Some(&root),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A joining member reads the member list with the cluster token.
    let (status, _) = api
        .call(f1, Method::GET, "/cluster/members", None, None, true)
        .await;
    assert_eq!(status, StatusCode::OK);
    // User management: root only.
    let (status, _) = api
        .call(f1, Method::GET, "/auth/users", None, Some(&alice), true)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .call(f1, Method::GET, "/auth/users", None, Some(&root), false)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users: Vec<UserInfo> = serde_json::from_value(body).expect("user list");
    assert_eq!(users.len(), 3);
    assert!(!serde_json::to_string(&users).unwrap().contains("pbkdf2"));

    // A deleted user's token is refused on every member.
    let (status, body) = api
        .call(
            f1,
            Method::DELETE,
            "/auth/users/bob",
            None,
            Some(&root),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for id in c.ids() {
        c.wait_until(WAIT, "bob's token is refused", || async {
            api.get(id, "app/x", Some(&bob)).await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
        assert_eq!(
            api.put(id, "app/x", "late", Some(&bob)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        api.get(f2, "app/x", Some(&root)).await.1.as_deref(),
        Some("bob")
    );

    // Password guessing: after five wrong passwords for a name, that node
    // answers 429 for it, even to the right password, without checking it;
    // other names and other members are not affected.
    // (Earlier steps may already have counted some failures for alice.)
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(api.token(leader, "alice", "guess").await);
    }
    assert!(
        answers.iter().all(
            |a| *a == Err(StatusCode::UNAUTHORIZED) || *a == Err(StatusCode::TOO_MANY_REQUESTS)
        ),
        "{answers:?}"
    );
    assert_eq!(
        answers[6],
        Err(StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
    assert_eq!(
        api.token(leader, "alice", "alicepw").await,
        Err(StatusCode::TOO_MANY_REQUESTS)
    );
    assert!(api.token(leader, "root", "rootpw").await.is_ok());
    assert!(api.token(f1, "alice", "alicepw").await.is_ok());

    // Root cannot be locked out while enabled; disabling opens everything.
    let (status, _) = api
        .call(
            leader,
            Method::DELETE,
            "/auth/users/root",
            None,
            Some(&root),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api
        .call(f2, Method::POST, "/auth/disable", None, Some(&root), false)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for id in c.ids() {
        c.wait_until(WAIT, "anonymous writes work again", || async {
            api.put(id, "app/x", "open", None).await == StatusCode::OK
        })
        .await;
    }
}
