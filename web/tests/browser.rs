//! End to end in headless Chromium: a real 3-node cluster serves the
//! dashboard; the test drives the Live view (members, leader, put/get
//! through the form, SIGKILL of the leader, a fourth member added: first a
//! learner that does not count for the fault tolerance, then a voter) and
//! the Simulator view (crash the leader and see a new one; load a seed from
//! the URL twice and compare the trace hashes; force a follower's election
//! timeout and see it lead; put and get by hand through a follower; inspect
//! a message in flight (by Enter on the focused dot, then by a click) and
//! drop it; drag across two nodes to split them off, with the mouse and
//! with a finger; add a node, see it a learner, promote it through the joint phase,
//! remove the leader and stop it for good). Screenshots of both views go to
//! `docs/`; the simulator's joint phase goes to the target's temporary
//! directory.
//!
//! The Live view runs on the members' push streams: a write made through
//! the API shows in the log grid with its term and command while the page
//! polls nothing; a dead follower is listed by the leader as unreachable
//! with the time it was last heard from, not as "replicate".
//!
//! Also: the guided tour appears on the first visit and not after it is
//! dismissed; the simulator starts at 0.1×; a node is selected, crashed
//! and the run scrubbed with the keyboard alone; the wasm is served
//! gzip-compressed and cached as immutable; the node that served the page
//! is SIGKILLed and the page names the new leader through another member
//! within a deadline; no page logs an error (`index.html` records errors,
//! unhandled rejections and `console.error` in `window.__raftKvErrors`);
//! screenshots at 1400x1000, 1024x768 and 390x844 go to `docs/`.
//!
//! Needs `/usr/bin/chromedriver`, `/usr/bin/chromium` and a built
//! `web/dist` (`web/build.sh`); without them it prints why and passes,
//! unless `RAFT_KV_REQUIRE_BROWSER` is set, as `run_tests.sh` does after it
//! installs and builds them.
//!
//! A browser that stalls (a page the node serves does not load within
//! [`PAGE_LOAD_TIMEOUT`]) gets the whole run again with a new browser and a
//! new cluster, up to three runs; every failed run prints chromedriver's log.

#[path = "../../server/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{
    ActionSequence, InputSource, MouseActions, PointerAction, TouchActions, MOUSE_BUTTON_LEFT,
};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{Cluster, ClusterOptions};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's chromium package keeps the browser itself.
const CHROMIUM_DIR: &str = "/usr/lib/chromium";

fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist")
}

/// The bundle directory `web/build.sh` names by its content (`pkg-<hash>`).
fn bundle_dir() -> Option<PathBuf> {
    std::fs::read_dir(dist_dir())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pkg-"))
        })
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let dist = dist_dir();
    [
        (
            PathBuf::from(CHROMEDRIVER),
            "apt-get install -y chromium-driver",
        ),
        (PathBuf::from(CHROMIUM), "apt-get install -y chromium"),
        (dist.join("index.html"), "web/build.sh"),
        (
            bundle_dir()
                .unwrap_or_else(|| dist.join("pkg-<hash>"))
                .join("web_bg.wasm"),
            "web/build.sh",
        ),
    ]
    .into_iter()
    .find(|(p, _)| !p.exists())
    .map(|(p, fix)| format!("{} is missing (run `{fix}`)", p.display()))
}

/// chromedriver on a free port, killed on drop. Each one gets its own
/// scratch directory: HOME and the XDG directories for Chromium (a machine
/// whose HOME is missing or read-only otherwise fails at start-up), the
/// browser profile, and the driver's log with the browser's own output.
struct Chromedriver {
    child: Child,
    port: u16,
    scratch: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver on a free port and waits until it accepts
    /// connections; a start that loses the port race (or dies) is retried
    /// on a new port.
    fn start() -> Chromedriver {
        for _attempt in 0..3 {
            let scratch = tempfile::tempdir().expect("scratch dir for chromedriver");
            let home = scratch.path().join("home");
            std::fs::create_dir_all(&home).expect("create scratch HOME");
            let port = support::free_ports(1)[0];
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--log-path={}",
                    scratch.path().join("chromedriver.log").display()
                ))
                .arg("--enable-chrome-logs")
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Chromedriver {
                        child,
                        port,
                        scratch,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chromedriver did not start listening (3 attempts)");
    }

    /// The last 60 lines of the driver's log, which include the browser's
    /// output: what to look at when a session cannot be created.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.path().join("chromedriver.log"))
            .unwrap_or_else(|e| format!("(no chromedriver log: {e})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Opens a browser session through this driver. Chromium gets a fresh
    /// profile in the scratch directory and talks to the driver over a pipe,
    /// so its start does not depend on a DevToolsActivePort file.
    async fn session(&self) -> Result<Client, String> {
        let profile = self.scratch.path().join("profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                         "--remote-debugging-pipe",
                         format!("--user-data-dir={}", profile.display())]
            },
            // A page that does not load in a minute will not load at all:
            // fail then (and retry with a new browser), not after
            // chromedriver's default of five minutes.
            "timeouts": { "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64 }
        });
        let caps = caps.as_object().cloned().expect("an object");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .map_err(|e| e.to_string())
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's files (about 350 MB) once, so they are in the page
/// cache before chromedriver starts it. On a cold cache and a slow disk
/// (12 MB/s measured here while other tests wrote) Chromium's start alone
/// outlasted chromedriver's 60-second wait, and the session failed with
/// "DevToolsActivePort file doesn't exist" or "Timed out receiving message
/// from renderer". Errors are ignored: this only makes the start faster.
fn page_in_chromium() {
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut dirs = vec![PathBuf::from(CHROMIUM_DIR)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() => {
                    if let Ok(mut f) = std::fs::File::open(&path) {
                        bytes += std::io::copy(&mut f, &mut std::io::sink()).unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
    }
    println!(
        "read {} MB of Chromium's files in {:.1} s",
        bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
}

/// A driver and a browser session on it. A browser that fails to start is
/// retried with a new driver and a new profile; each failure prints the
/// driver's log so a machine where Chromium cannot start says why.
async fn open_browser() -> (Chromedriver, Client) {
    const ATTEMPTS: usize = 3;
    let mut errors = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let driver = Chromedriver::start();
        match driver.session().await {
            Ok(client) => return (driver, client),
            Err(e) => {
                eprintln!(
                    "browser attempt {attempt}/{ATTEMPTS}: cannot open a webdriver session: {e}\n\
                     --- chromedriver log (last lines) ---\n{}",
                    driver.log_tail()
                );
                errors.push(e);
            }
        }
    }
    panic!("cannot open a webdriver session in {ATTEMPTS} attempts: {errors:?}");
}

/// How long a page may take to load.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a panic message when the browser, not the dashboard, failed: a
/// navigation that did not finish although the node serves the page.
const BROWSER_STALL: &str = "the browser stalled";

/// Opens `url` in the browser. If the navigation fails, asks the node for
/// the page directly: a node that does not serve it fails the test; one
/// that does means the browser stalled (seen on a cold CI machine: the
/// renderer did not answer for five minutes), which the test retries with
/// a new browser.
async fn navigate(c: &Client, url: &str) {
    let Err(e) = c.goto(url).await else {
        return;
    };
    let page = url.split('#').next().unwrap_or(url);
    let answer = support::http_client().get(page).send().await;
    match answer {
        Ok(r) if r.status().is_success() => {
            panic!(
                "{BROWSER_STALL}: cannot open {url}: {e} (the node serves the page: {})",
                r.status()
            )
        }
        Ok(r) => panic!(
            "the node does not serve the dashboard at {page}: {}",
            r.status()
        ),
        Err(err) => panic!("the node does not answer at {page}: {err} (the browser said: {e})"),
    }
}

/// Polls `f` until it returns `Some`; panics naming `what` after `timeout`.
async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn fill(c: &Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.expect(id);
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("send_keys");
}

/// Clicks the element with `id`, scrolled to the middle of the window
/// first (at the top, the sticky header would take the click). The page
/// keeps redrawing (the feed, the ring), so the element may move between
/// the scroll and the click: an intercepted click is tried again after the
/// next animation frame, a bounded number of times.
async fn click(c: &Client, id: &str) {
    const ATTEMPTS: usize = 20;
    for attempt in 1..=ATTEMPTS {
        c.execute(
            "document.getElementById(arguments[0]).scrollIntoView({block: 'center'})",
            vec![json!(id)],
        )
        .await
        .expect("scroll into view");
        match c.find(Locator::Id(id)).await.expect(id).click().await {
            Ok(()) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::ElementClickIntercepted
                    && attempt < ATTEMPTS =>
            {
                c.execute_async(
                    "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => done())",
                    vec![],
                )
                .await
                .expect("wait for a frame");
            }
            Err(e) => panic!("click {id}: {e}"),
        }
    }
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let dir = docs_dir();
    std::fs::create_dir_all(&dir).expect("docs dir");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write screenshot");
    println!("wrote {}", path.display());
}

/// The live leader's id as the page shows it (exactly one leader card).
async fn page_leader(c: &Client) -> Option<u64> {
    if count(c, "#live-members .node-card").await != 3
        || count(c, "#live-members .node-card[data-role=leader]").await != 1
    {
        return None;
    }
    attr(
        c,
        "#live-members .node-card[data-role=leader]",
        "data-node-id",
    )
    .await?
    .parse()
    .ok()
}

/// Starts the cluster under test. (The one place that knows how; it uses
/// the server's shared helper.)
async fn start_cluster() -> Cluster {
    let opts = ClusterOptions {
        extra_args: vec!["--web-dir".into(), dist_dir().display().to_string()],
        ..ClusterOptions::default()
    };
    Cluster::start_with(3, opts).await
}

async fn live_view(c: &Client) {
    let mut cluster = start_cluster().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    // Open the page from a follower, so that it survives the leader's death.
    let page_node = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let base = cluster.url(page_node);
    navigate(c, &format!("{base}/#live")).await;
    tour_once(c).await;
    wasm_served_compressed(&base).await;

    let shown = wait_for(
        Duration::from_secs(30),
        "3 members and 1 leader on the page",
        || page_leader(c),
    )
    .await;
    assert_eq!(shown, leader, "the page shows the cluster's leader");
    pushed_write_in_log_grid(c, &cluster, leader).await;

    // Put, then get, through the forms.
    let value = "hello from chromium";
    fill(c, "put-key", "greeting").await;
    fill(c, "put-value", value).await;
    click(c, "put-btn").await;
    let status = answer_of(c, "PUT").await;
    assert_eq!(status, "ok", "put failed: {:?}", text(c, "#result").await);
    let index = text(c, "#result-index").await.unwrap_or_default();
    assert!(
        index.parse::<u64>().is_ok(),
        "a commit index is shown, got {index:?}"
    );
    let forwarded = text(c, "#result-forwarded").await.unwrap_or_default();
    assert!(
        forwarded.starts_with("yes"),
        "a follower forwards the put: {forwarded:?}"
    );

    fill(c, "get-key", "greeting").await;
    click(c, "get-btn").await;
    let got = answer_of(c, "GET").await;
    assert_eq!(got, "ok", "get failed: {:?}", text(c, "#result").await);
    assert_eq!(text(c, "#result-value").await.as_deref(), Some(value));
    let served = text(c, "#result-served-by").await.unwrap_or_default();
    assert!(served.starts_with('n'), "served-by shown: {served:?}");
    // Let a poll or two show the write on the cards.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    screenshot(c, "screenshot-live.png").await;

    // SIGKILL the leader; the page shows the new one.
    cluster.kill(leader);
    let new_leader = wait_for(
        Duration::from_secs(30),
        "a new leader on the page",
        || async {
            let l = page_leader(c).await?;
            (l != leader).then_some(l)
        },
    )
    .await;
    assert_ne!(new_leader, leader);
    let old_card = format!("#live-members .node-card[data-node-id=\"{leader}\"]");
    wait_for(
        Duration::from_secs(15),
        "the killed leader marked down",
        || async {
            (attr(c, &old_card, "data-role").await.as_deref() == Some("down")).then_some(())
        },
    )
    .await;
    println!("live view: leader {leader} killed, page shows new leader {new_leader}");
    // The new leader's table says the dead node is unreachable, not
    // "replicate", once an election timeout passed without contact.
    let row = format!(
        "#live-members .node-card[data-node-id=\"{new_leader}\"] tr[data-follower=\"{leader}\"]"
    );
    let row_text = wait_for(
        Duration::from_secs(15),
        "the dead follower shown unreachable by the new leader",
        || async {
            (attr(c, &row, "data-silent").await? == "true").then_some(())?;
            text(c, &row).await
        },
    )
    .await;
    assert!(
        row_text.contains("unreachable")
            && row_text.contains("last heard")
            && !row_text.contains("replicate"),
        "{row_text:?}"
    );
    println!("live view: n{new_leader} lists n{leader} as {row_text:?}");
    no_page_errors(c, "the live view").await;

    live_membership(c, &mut cluster, page_node).await;
    sim_view(c, &base).await;
    sim_keyboard(c, &base).await;
    no_page_errors(c, "the simulator").await;
    screenshots_at_sizes(c, &base).await;
    serving_node_killed(c, &mut cluster, leader).await;
}

/// A write made through the API (not the page) reaches the page through
/// the push streams: the log grid shows its entry with its term and command
/// while the page makes no poll of `/cluster` (the mode pill counts them).
async fn pushed_write_in_log_grid(c: &Client, cluster: &Cluster, leader: u64) {
    wait_for(Duration::from_secs(15), "the page on push", || async {
        (attr(c, "#live-mode", "data-mode").await? == "push").then_some(())
    })
    .await;
    let polls_before = attr(c, "#live-mode", "data-polls")
        .await
        .unwrap_or_default();
    let r = cluster.put(leader, "pushed-key", "v").await;
    assert!(r.status().is_success(), "{}", r.status());
    let w: raft_core::wire::WriteResponse = r.json().await.expect("write answer");
    let term = cluster
        .status(leader)
        .await
        .map(|s| s.term)
        .expect("the leader's status");
    let cell = format!(
        "#live-log-grid .lg-row[data-node-id=\"{leader}\"] .lg-cell[title*=\"entry {} \"]",
        w.index
    );
    let shown = wait_for(
        Duration::from_secs(10),
        "the pushed write in the log grid with its term",
        || async {
            let title = attr(c, &cell, "title").await?;
            let t = text(c, &cell).await?;
            title.contains("put pushed-key").then_some(t)
        },
    )
    .await;
    assert_eq!(shown, term.to_string(), "the cell shows the entry's term");
    let polls_after = attr(c, "#live-mode", "data-polls")
        .await
        .unwrap_or_default();
    assert_eq!(
        polls_before, polls_after,
        "the write arrived by push, without a poll of /cluster"
    );
    println!(
        "live view: put at index {} shown in the grid (term {term}) by push; /cluster polls {polls_after}",
        w.index
    );
}

/// The guided tour shows on the first visit, steps forward, and once
/// skipped stays away on a reload.
async fn tour_once(c: &Client) {
    wait_for(
        Duration::from_secs(30),
        "the tour on the first visit",
        || async {
            (attr(c, "#tour", "hidden").await.is_none()
                && text(c, "#tour-count").await? == "1 of 5")
                .then_some(())
        },
    )
    .await;
    click(c, "tour-next").await;
    wait_for(
        Duration::from_secs(10),
        "the tour's second card",
        || async { (text(c, "#tour-count").await? == "2 of 5").then_some(()) },
    )
    .await;
    click(c, "tour-skip").await;
    wait_for(Duration::from_secs(10), "the tour gone", || async {
        attr(c, "#tour", "hidden").await.map(|_| ())
    })
    .await;
    // Once the page has polled (the wasm runs), the tour must still be away.
    reload_and_wait_for_a_poll(c).await;
    assert!(
        attr(c, "#tour", "hidden").await.is_some(),
        "the tour came back after it was dismissed"
    );
    println!("tour: shown on the first visit, not after it was dismissed");
}

/// The wasm bundle the page names is served gzip-compressed to a client
/// that accepts gzip, cached as immutable, with an ETag; the browser got it
/// compressed as well.
async fn wasm_served_compressed(base: &str) {
    let http = support::http_client();
    let index = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("index.html")
        .text()
        .await
        .expect("index body");
    let start = index.find("./pkg-").expect("index.html names the bundle") + 2;
    let end = start + index[start..].find('/').expect("pkg-<hash>/");
    let bundle = &index[start..end];
    let raw = std::fs::metadata(dist_dir().join(bundle).join("web_bg.wasm"))
        .expect("the built wasm")
        .len();
    let r = http
        .get(format!("{base}/{bundle}/web_bg.wasm"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("the wasm");
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers().clone();
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("content-encoding"), "gzip");
    assert!(header("cache-control").contains("immutable"), "{h:?}");
    assert!(!header("etag").is_empty(), "an ETag: {h:?}");
    let served = r.bytes().await.expect("the wasm's bytes").len() as u64;
    assert!(
        served * 2 < raw,
        "gzip should at least halve the wasm: {served} of {raw} bytes"
    );
    let index_cache = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("index.html")
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok().map(str::to_string));
    assert_eq!(index_cache.as_deref(), Some("no-cache"));
    println!("wasm: {raw} bytes raw, {served} bytes as served (gzip, {bundle}, immutable)");
}

/// Fails if the page recorded an error (see `index.html`).
async fn no_page_errors(c: &Client, what: &str) {
    let errors = c
        .execute("return window.__raftKvErrors || []", vec![])
        .await
        .expect("read the page's errors");
    let errors = errors.as_array().cloned().unwrap_or_default();
    assert!(errors.is_empty(), "{what} logged errors: {errors:?}");
}

/// Out of the box the simulator runs at 0.1×; a ring node is reached and
/// selected with the keyboard; `c` crashes it; ← scrubs back before the
/// crash (the node is up again, the run paused) and → forward to it.
async fn sim_keyboard(c: &Client, base: &str) {
    navigate(c, &format!("{base}/#sim?seed=3&nodes=5")).await;
    wait_for(Duration::from_secs(30), "the default speed", || async {
        let speed = attr(c, "#sim-speed-val", "data-speed").await?;
        let label = text(c, "#sim-speed-val").await?;
        (speed == "0.1000" && label == "0.1×").then_some(())
    })
    .await;
    paused_run(c, base, "seed=3&nodes=5", 800).await;
    let node = c
        .find(Locator::Css("#sim-ring .sim-node[data-node-id=\"2\"]"))
        .await
        .expect("n2 on the ring");
    assert_eq!(
        node.attr("tabindex").await.ok().flatten().as_deref(),
        Some("0")
    );
    node.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("Enter on n2");
    wait_for(
        Duration::from_secs(10),
        "n2 selected by keyboard",
        || async { (text(c, "#sim-selected").await? == "n2").then_some(()) },
    )
    .await;
    let press = |key: String| async move {
        c.active_element()
            .await
            .expect("the focused element")
            .send_keys(&key)
            .await
            .expect("a key press");
    };
    let role = || async { attr(c, "#sim-ring .sim-node[data-node-id=\"2\"]", "data-role").await };
    press("c".into()).await;
    wait_for(
        Duration::from_secs(10),
        "n2 crashed by the c key",
        || async { (role().await? == "down").then_some(()) },
    )
    .await;
    assert_eq!(text(c, "#sim-step").await.as_deref(), Some("800"));
    press(char::from(Key::Left).to_string()).await;
    wait_for(
        Duration::from_secs(30),
        "← scrubbed back 10 steps",
        || async {
            (text(c, "#sim-step").await? == "790" && role().await? != "down").then_some(())
        },
    )
    .await;
    press(char::from(Key::Right).to_string()).await;
    wait_for(Duration::from_secs(30), "→ back at the crash", || async {
        (text(c, "#sim-step").await? == "800" && role().await? == "down").then_some(())
    })
    .await;
    assert_eq!(
        text(c, "#sim-play").await.as_deref(),
        Some("Play"),
        "scrubbing pauses"
    );
    assert_eq!(
        text(c, "#sim-restart-all").await.as_deref(),
        Some("Restart crashed (1)"),
        "the button says what it restarts"
    );
    // A forced timeout under PreVote says why it changes nothing: select a
    // follower by its number, press t.
    let leader = sim_leader(c).await.expect("a leader");
    let follower = (1..=5)
        .find(|&n| n != leader && n != 2)
        .expect("a follower");
    press(follower.to_string()).await;
    wait_for(
        Duration::from_secs(10),
        "the follower selected by its number",
        || async { (text(c, "#sim-selected").await? == format!("n{follower}")).then_some(()) },
    )
    .await;
    assert!(
        disabled(c, "sim-restart").await,
        "a running node cannot be restarted"
    );
    press("t".into()).await;
    let note = wait_for(Duration::from_secs(10), "the timeout explained", || async {
        text(c, "#sim-action-note").await.filter(|t| !t.is_empty())
    })
    .await;
    assert!(
        note.contains("PreVote") && note.contains("nothing changes"),
        "{note}"
    );
    let feed = text(c, "#sim-feed").await.unwrap_or_default();
    assert!(
        feed.contains("n2 crashed"),
        "the feed tells the crash: {feed}"
    );
    println!("simulator: default speed 0.1×; n2 selected, crashed and scrubbed by keyboard");
}

/// Screenshots of both views at a desktop, a small laptop and a phone
/// size; at each the page must not be wider than the window.
async fn screenshots_at_sizes(c: &Client, base: &str) {
    for (w, h) in [(1400u32, 1000u32), (1024, 768), (390, 844)] {
        // The window's frame takes room: size the window so that the page
        // itself gets w x h.
        c.set_window_size(w, h).await.expect("window size");
        let inner = c
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .expect("the viewport");
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(u64::from(w)) as u32,
            inner[1].as_u64().unwrap_or(u64::from(h)) as u32,
        );
        c.set_window_size(w + w.saturating_sub(iw), h + h.saturating_sub(ih))
            .await
            .expect("window size");
        for (view, hash) in [
            ("live", "#live"),
            ("sim", "#sim?seed=3&nodes=5&at=1400&speed=300"),
        ] {
            navigate(c, &format!("{base}/{hash}")).await;
            if view == "sim" {
                trace_at(c, 1400).await;
                // Play a little, so the feed has a story to show.
                click(c, "sim-play").await;
                wait_for(Duration::from_secs(60), "a few hundred steps", || async {
                    let step: u64 = text(c, "#sim-step").await?.parse().ok()?;
                    (step >= 1700).then_some(())
                })
                .await;
                click(c, "sim-play").await;
            } else {
                wait_for(Duration::from_secs(30), "the live cards", || async {
                    (count(c, "#live-members .node-card").await >= 3).then_some(())
                })
                .await;
            }
            c.execute("window.scrollTo(0, 0)", vec![])
                .await
                .expect("scroll to the top");
            let overflow = c
                .execute(
                    "return document.documentElement.scrollWidth - window.innerWidth",
                    vec![],
                )
                .await
                .expect("page width")
                .as_i64()
                .unwrap_or(0);
            assert!(
                overflow <= 0,
                "{view} at {w}x{h} is {overflow} px wider than the window"
            );
            screenshot(c, &format!("screenshot-{view}-{w}x{h}.png")).await;
            if view == "sim" && w == 1400 {
                // The client history with its labelled bars and time axis.
                let history = c
                    .find(Locator::Id("sim-history"))
                    .await
                    .expect("the history");
                let axis_labels = c
                    .find_all(Locator::Css("#sim-history .axis text"))
                    .await
                    .expect("the axis")
                    .len();
                assert!(
                    axis_labels >= 7,
                    "the history has a time axis: {axis_labels} labels"
                );
                let png = history.screenshot().await.expect("history screenshot");
                let path = docs_dir().join("screenshot-sim-history.png");
                std::fs::write(&path, png).expect("write the history screenshot");
            }
        }
    }
    c.set_window_size(1280, 1000).await.expect("window size");
}

/// SIGKILL of the node that served the page: the page keeps watching
/// through another member, says so in words, keeps the dead node's last
/// values greyed, and names the new leader within a deadline. (The leader
/// killed earlier is restarted first: all four voters are up, so the
/// cluster can lose one.)
async fn serving_node_killed(c: &Client, cluster: &mut Cluster, killed_before: u64) {
    cluster.restart(killed_before).await;
    let serving = cluster.wait_for_leader(Duration::from_secs(30)).await;
    navigate(c, &format!("{}/#live", cluster.url(serving))).await;
    wait_for(
        Duration::from_secs(30),
        "the page showing its node leading",
        || async {
            let l = attr(c, "#live-leader", "data-leader").await?;
            let up = text(c, "#live-ft").await?;
            (l == serving.to_string() && up.contains("4 of 4")).then_some(())
        },
    )
    .await;
    let card = format!("#live-members .node-card[data-node-id=\"{serving}\"]");
    let commit_before = text(c, &format!("{card} dd[data-stat=commit]"))
        .await
        .unwrap_or_default();
    cluster.kill(serving);
    let killed_at = Instant::now();
    const DEADLINE: Duration = Duration::from_secs(20);
    let new_leader = wait_for(DEADLINE, "the page naming a new leader", || async {
        let l: u64 = attr(c, "#live-leader", "data-leader").await?.parse().ok()?;
        let via: u64 = attr(c, "#live-updated", "data-via").await?.parse().ok()?;
        (l != serving && via != serving).then_some(l)
    })
    .await;
    let took = killed_at.elapsed();
    let banner = text(c, "#live-banner").await.unwrap_or_default();
    assert_eq!(
        attr(c, "#live-banner", "data-kind").await.as_deref(),
        Some("failover"),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("n{serving}")) && banner.contains("unreachable"),
        "the banner says which node went and why: {banner}"
    );
    wait_for(
        Duration::from_secs(10),
        "the dead node's card greyed",
        || async {
            (attr(c, &card, "data-stale").await? == "true"
                && attr(c, &card, "data-role").await? == "down")
                .then_some(())
        },
    )
    .await;
    let commit_after = text(c, &format!("{card} dd[data-stat=commit]"))
        .await
        .unwrap_or_default();
    assert!(
        commit_after.parse::<u64>().is_ok() && !commit_before.is_empty(),
        "the dead node keeps its last-known commit index: {commit_after:?}"
    );
    let ft = text(c, "#live-ft").await.unwrap_or_default();
    assert!(
        ft.contains("3 of 4"),
        "the pill counts the dead node out: {ft}"
    );
    let error = text(c, &format!("{card} .node-error"))
        .await
        .unwrap_or_default();
    assert!(
        error.contains("connection refused"),
        "the reason in words: {error:?}"
    );
    no_page_errors(c, "the live view").await;
    screenshot(c, "screenshot-live-failover.png").await;
    println!(
        "live view: n{serving} served the page and was killed; the page named n{new_leader} after {:.1} s ({banner})",
        took.as_secs_f64()
    );
}

/// Adds node 4 through the membership API: the page shows it as a learner
/// (down: not started yet) that the fault tolerance does not count; started
/// with `--join`, it catches up, is promoted, and the page shows four
/// voters.
async fn live_membership(c: &Client, cluster: &mut Cluster, page_node: u64) {
    cluster.add_node(4);
    let body = json!({"id": 4, "url": cluster.url(4)});
    // Through the leader; refused (and retried) while a new leader has not
    // committed an entry of its term yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    let added = loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
        let r = cluster
            .http()
            .post(format!("{}/cluster/members", cluster.url(leader)))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => break leader,
            other => {
                let why = match other {
                    Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                };
                assert!(Instant::now() < deadline, "cannot add node 4: {why}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let card = "#live-members .node-card[data-node-id=\"4\"]";
    wait_for(
        Duration::from_secs(15),
        "node 4 on the page as a learner",
        || async { (attr(c, card, "data-member").await? == "learner").then_some(()) },
    )
    .await;
    let ft = text(c, "#live-ft").await.unwrap_or_default();
    assert!(
        ft.contains("of 3 voters") && ft.contains("1 learner, not counted"),
        "only voters count: {ft:?}"
    );
    let config = text(c, "#live-config").await.unwrap_or_default();
    assert!(config.contains("learners {4"), "{config:?}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshot-live-learner.png");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(&shot, png).expect("write the learner screenshot");
    println!("live view: node 4 added through n{added}, shown as a learner; {ft}");

    let args = cluster.join_args(4, page_node);
    cluster.spawn_with(4, args);
    wait_for(
        Duration::from_secs(60),
        "node 4 promoted to voter on the page",
        || async {
            let member = attr(c, card, "data-member").await?;
            let config = text(c, "#live-config").await?;
            (member == "voter" && config == "voters {1,2,3,4}").then_some(())
        },
    )
    .await;
    let ft = text(c, "#live-ft").await.unwrap_or_default();
    assert!(ft.contains("of 4 voters"), "{ft:?}");
    println!("live view: node 4 caught up and promoted; {ft}");
}

async fn sim_leader(c: &Client) -> Option<u64> {
    attr(c, "#sim-leader", "data-leader").await?.parse().ok()
}

async fn trace_at(c: &Client, step: u64) -> String {
    wait_for(
        Duration::from_secs(30),
        "the simulator at the URL's step",
        || async {
            let s = text(c, "#sim-step").await?;
            let h = text(c, "#sim-trace-hash").await?;
            (s == step.to_string() && !h.is_empty()).then_some(h)
        },
    )
    .await
}

async fn sim_view(c: &Client, base: &str) {
    navigate(c, &format!("{base}/#sim?seed=3&nodes=5&speed=400")).await;
    let first = wait_for(Duration::from_secs(60), "a simulated leader", || {
        sim_leader(c)
    })
    .await;
    click(c, "sim-crash-leader").await;
    let second = wait_for(
        Duration::from_secs(60),
        "a new simulated leader",
        || async {
            let l = sim_leader(c).await?;
            (l != first).then_some(l)
        },
    )
    .await;
    let role = attr(
        c,
        &format!("#sim-ring .sim-node[data-node-id=\"{first}\"]"),
        "data-role",
    )
    .await;
    assert_eq!(
        role.as_deref(),
        Some("down"),
        "the crashed leader is shown down"
    );
    println!("simulator: leader n{first} crashed, n{second} elected");

    // The same seed and actions from the URL replay the same run.
    let url = format!("{base}/#sim?seed=11&nodes=5&at=2500&acts=700:c1,1800:r1");
    navigate(c, &url).await;
    let a = trace_at(c, 2500).await;
    navigate(c, &format!("{base}/#live")).await;
    c.refresh().await.expect("reload");
    navigate(c, &url).await;
    let b = trace_at(c, 2500).await;
    assert_eq!(a, b, "the same URL gives the same run");
    navigate(c, &format!("{base}/#sim?seed=12&nodes=5&at=2500")).await;
    let other = trace_at(c, 2500).await;
    assert_ne!(a, other, "another seed gives another run");
    println!("simulator: trace hash {a} replayed identically");

    sim_force_timeout(c, base).await;
    sim_hand_ops(c, base).await;
    sim_inspect_message(c, base).await;
    sim_drag_split(c, base, false).await;
    sim_drag_split(c, base, true).await;
    sim_membership(c, base).await;
}

/// Whether the button is disabled (so it can be neither pressed nor
/// focused).
async fn disabled(c: &Client, id: &str) -> bool {
    attr(c, &format!("#{id}"), "disabled").await.is_some()
}

/// The configuration pill's `data-*` attribute.
async fn sim_config(c: &Client, name: &str) -> Option<String> {
    attr(c, "#sim-config", name).await
}

async fn sim_member(c: &Client, id: u64) -> Option<String> {
    attr(
        c,
        &format!("#sim-ring .sim-node[data-node-id=\"{id}\"]"),
        "data-member",
    )
    .await
}

/// Plays until `what` holds, then pauses.
async fn play_until<F, Fut>(c: &Client, what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    click(c, "sim-play").await;
    wait_for(Duration::from_secs(60), what, f).await;
    click(c, "sim-play").await;
    wait_for(Duration::from_secs(10), "the run paused", || async {
        (text(c, "#sim-play").await? == "Play").then_some(())
    })
    .await;
}

/// Membership in the simulator: add n6 (a learner, dashed), promote it
/// (the joint phase shows both voter sets and both majorities), remove the
/// leader (it steps down, a new leader is elected, it is shown removed) and
/// stop it for good (it leaves the ring). While a change is in progress the
/// buttons are disabled and say why.
async fn sim_membership(c: &Client, base: &str) {
    paused_run(c, base, "seed=3&nodes=5&speed=1000", 800).await;
    wait_for(Duration::from_secs(10), "Add enabled", || async {
        (!disabled(c, "sim-add").await).then_some(())
    })
    .await;
    assert!(disabled(c, "sim-promote").await, "nothing selected");
    click(c, "sim-add").await;
    wait_for(
        Duration::from_secs(10),
        "n6 on the ring as a learner",
        || async { (sim_member(c, 6).await? == "learner").then_some(()) },
    )
    .await;
    assert_eq!(sim_config(c, "data-learners").await.as_deref(), Some("6"));
    assert_eq!(
        attr(c, "#sim-conf-result", "data-status").await.as_deref(),
        Some("ok")
    );
    // Paused: the learner's entry is not committed, so no other change may
    // start; the buttons say so.
    assert!(disabled(c, "sim-add").await, "one change at a time");
    let hint = text(c, "#sim-conf-hint").await.unwrap_or_default();
    assert!(hint.contains("in progress"), "{hint:?}");
    let ft = text(c, "#sim-ft").await.unwrap_or_default();
    assert!(
        ft.contains("of 5 voters") && ft.contains("1 learner"),
        "{ft:?}"
    );
    play_until(c, "the learner's entry committed", || async {
        (attr(c, "#sim-conf-hint", "data-blocked").await? == "false").then_some(())
    })
    .await;

    select_node(c, 6).await;
    wait_for(Duration::from_secs(10), "Promote enabled", || async {
        (!disabled(c, "sim-promote").await).then_some(())
    })
    .await;
    click(c, "sim-promote").await;
    wait_for(Duration::from_secs(10), "the joint phase", || async {
        (sim_config(c, "data-joint").await? == "true").then_some(())
    })
    .await;
    assert_eq!(
        sim_config(c, "data-outgoing").await.as_deref(),
        Some("1 2 3 4 5")
    );
    assert_eq!(
        sim_config(c, "data-voters").await.as_deref(),
        Some("1 2 3 4 5 6")
    );
    let pill = text(c, "#sim-config").await.unwrap_or_default();
    assert!(
        pill.starts_with("joint: {1,2,3,4,5} → {1,2,3,4,5,6}"),
        "{pill:?}"
    );
    assert_eq!(sim_member(c, 6).await.as_deref(), Some("joining"));
    assert_eq!(
        attr(c, "#sim-ft", "data-joint").await.as_deref(),
        Some("true")
    );
    let ft = text(c, "#sim-ft").await.unwrap_or_default();
    assert!(ft.contains("both majorities"), "{ft:?}");
    let centre = text(c, "#sim-ring .ring-config").await.unwrap_or_default();
    assert!(
        centre.to_lowercase().contains("joint consensus"),
        "{centre:?}"
    );
    assert!(disabled(c, "sim-add").await && disabled(c, "sim-remove").await);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshot-sim-joint.png");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(&shot, png).expect("write the joint-phase screenshot");
    println!(
        "simulator: joint phase {pill}; screenshot {}",
        shot.display()
    );

    play_until(c, "n6 a voter in the new configuration", || async {
        let done = sim_config(c, "data-joint").await? == "false"
            && sim_config(c, "data-voters").await? == "1 2 3 4 5 6"
            && sim_member(c, 6).await? == "voter"
            && attr(c, "#sim-conf-hint", "data-blocked").await? == "false";
        done.then_some(())
    })
    .await;
    let configs = text(c, "#sim-configs").await.unwrap_or_default();
    assert!(
        configs.contains("joint: {1,2,3,4,5} → {1,2,3,4,5,6}"),
        "{configs}"
    );

    // Remove the leader: it steps down once the change commits.
    let leader = sim_leader(c).await.expect("a leader");
    select_node(c, leader).await;
    click(c, "sim-remove").await;
    wait_for(Duration::from_secs(10), "the leader leaving", || async {
        (sim_member(c, leader).await? == "leaving").then_some(())
    })
    .await;
    let rest: Vec<String> = (1..=6)
        .filter(|&n| n != leader)
        .map(|n| n.to_string())
        .collect();
    let rest = rest.join(" ");
    play_until(c, "the leader removed and another elected", || async {
        let done = sim_config(c, "data-joint").await? == "false"
            && sim_config(c, "data-voters").await? == rest
            && sim_member(c, leader).await? == "removed"
            && sim_leader(c).await.is_some_and(|l| l != leader);
        done.then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "Stop for good enabled", || async {
        (!disabled(c, "sim-retire").await).then_some(())
    })
    .await;
    click(c, "sim-retire").await;
    let gone = format!("#sim-ring .sim-node[data-node-id=\"{leader}\"]");
    wait_for(
        Duration::from_secs(10),
        "the removed node off the ring",
        || async { (count(c, &gone).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(count(c, "#sim-ring .sim-node").await, 5);
    let url = c.current_url().await.expect("url");
    let frag = url.fragment().unwrap_or_default().to_string();
    for code in [
        ":a6".to_string(),
        ":v6".into(),
        format!(":o{leader}"),
        format!(":z{leader}"),
    ] {
        assert!(frag.contains(&code), "{code} in the URL: {frag}");
    }
    println!("simulator: n6 added and promoted; leader n{leader} removed and stopped for good");
}

/// Pressing on one node, dragging across another and releasing splits the
/// two off from the rest: every link between the groups is cut.
/// Drags from n1 across n2, with the mouse or (`touch`) a finger: the
/// pair is split off from the rest.
async fn sim_drag_split(c: &Client, base: &str, touch: bool) {
    paused_run(c, base, "seed=9&nodes=5", 600).await;
    // Pointer actions do not scroll: bring the ring into view.
    c.execute(
        "document.getElementById('sim-ring').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .expect("scroll to the ring");
    let node = |id: u64| async move {
        c.find(Locator::Css(&format!(
            "#sim-ring .sim-node[data-node-id=\"{id}\"] .body"
        )))
        .await
        .expect("a node on the ring")
    };
    let (n1, n2) = (node(1).await, node(2).await);
    let steps = [
        PointerAction::MoveToElement {
            element: n1,
            duration: None,
            x: 0.0,
            y: 0.0,
        },
        PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        },
        PointerAction::MoveToElement {
            element: n2,
            duration: Some(Duration::from_millis(200)),
            x: 0.0,
            y: 0.0,
        },
        PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        },
    ];
    let drag: ActionSequence = if touch {
        steps
            .into_iter()
            .fold(TouchActions::new("finger".into()), TouchActions::then)
            .into()
    } else {
        steps
            .into_iter()
            .fold(MouseActions::new("mouse".into()), MouseActions::then)
            .into()
    };
    c.perform_actions(drag)
        .await
        .expect("drag across n1 and n2");
    wait_for(
        Duration::from_secs(10),
        "the split drawn as cut links",
        || async {
            // 2 × 3 node pairs, both directions.
            (count(c, "#sim-ring .link.cut").await == 12).then_some(())
        },
    )
    .await;
    let url = c.current_url().await.expect("url");
    assert!(
        url.fragment().is_some_and(|f| f.contains(":s1.2")),
        "the split is in the URL: {url}"
    );
    println!(
        "simulator: dragged ({}) across n1 and n2, split off from the rest",
        if touch { "touch" } else { "mouse" }
    );
}

/// Selects node `id` on the ring.
async fn select_node(c: &Client, id: u64) {
    c.find(Locator::Css(&format!(
        "#sim-ring .sim-node[data-node-id=\"{id}\"] .body"
    )))
    .await
    .expect("the node on the ring")
    .click()
    .await
    .expect("click the node");
    wait_for(Duration::from_secs(10), "the node selected", || async {
        (text(c, "#sim-selected").await? == format!("n{id}")).then_some(())
    })
    .await;
}

/// Loads a run paused at `step`; its leader.
async fn paused_run(c: &Client, base: &str, query: &str, step: u64) -> u64 {
    navigate(c, &format!("{base}/#sim?{query}&at={step}")).await;
    trace_at(c, step).await;
    wait_for(
        Duration::from_secs(10),
        "a leader at the paused step",
        || sim_leader(c),
    )
    .await
}

/// With PreVote and CheckQuorum off nothing shields the leader: a
/// follower whose timer is fired by hand campaigns and wins.
async fn sim_force_timeout(c: &Client, base: &str) {
    let leader = paused_run(c, base, "seed=3&nodes=5&prevote=0&cq=0&speed=400", 1500).await;
    let follower = (1..=5).find(|&n| n != leader).expect("a follower");
    // Followers show their election timer as an arc.
    let arc = attr(
        c,
        &format!("#sim-ring .sim-node[data-node-id=\"{follower}\"] .timer-arc"),
        "stroke-dasharray",
    )
    .await;
    assert!(arc.is_some_and(|d| !d.is_empty()), "a follower's timer arc");
    select_node(c, follower).await;
    click(c, "sim-timeout").await;
    click(c, "sim-play").await;
    wait_for(
        Duration::from_secs(60),
        "the follower whose timeout was forced to lead",
        || async { (sim_leader(c).await? == follower).then_some(()) },
    )
    .await;
    let url = c.current_url().await.expect("url");
    assert!(
        url.fragment()
            .is_some_and(|f| f.contains(&format!(":e{follower}"))),
        "the timeout is in the URL: {url}"
    );
    println!("simulator: forced timeout made n{follower} leader (was n{leader})");
}

async fn hand_op_answer(c: &Client, op: &str) -> (String, String) {
    wait_for(Duration::from_secs(60), op, || async {
        let status = attr(c, "#sim-op-result", "data-status").await?;
        let shown = text(c, "#sim-op-result").await?;
        (shown.contains(op) && status != "pending").then_some((status, shown))
    })
    .await
}

/// A put then a get typed into the form, both through a follower: the
/// follower redirects the put to the leader and serves the get by
/// ReadIndex; both land in the history, which stays linearizable.
async fn sim_hand_ops(c: &Client, base: &str) {
    let leader = paused_run(c, base, "seed=5&nodes=3&speed=400", 800).await;
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    c.find(Locator::Css(&format!(
        "#sim-op-node option[value=\"{follower}\"]"
    )))
    .await
    .expect("the node option")
    .click()
    .await
    .expect("choose the node");
    let value = "teal-by-hand";
    fill(c, "sim-op-key", "color").await;
    fill(c, "sim-op-value", value).await;
    click(c, "sim-put").await;
    // Paused: the put waits.
    wait_for(Duration::from_secs(10), "the put pending", || async {
        (attr(c, "#sim-op-result", "data-status").await? == "pending").then_some(())
    })
    .await;
    click(c, "sim-play").await;
    let (status, shown) = hand_op_answer(c, "put(color, teal-by-hand)").await;
    assert_eq!(status, "ok", "the put: {shown}");
    click(c, "sim-get").await;
    let (status, shown) = hand_op_answer(c, "get(color)").await;
    assert_eq!(status, "ok", "the get: {shown}");
    assert_eq!(
        attr(c, "#sim-op-result", "data-value").await.as_deref(),
        Some(value),
        "the get shows the value: {shown}"
    );
    wait_for(
        Duration::from_secs(10),
        "the hand lane in the history",
        || async {
            let lanes = text(c, "#sim-history").await?;
            lanes.contains("by hand").then_some(())
        },
    )
    .await;
    assert_eq!(
        attr(c, "#sim-lin", "data-verdict").await.as_deref(),
        Some("linearizable")
    );
    println!("simulator: put and get by hand through n{follower}: {shown}");
}

/// Clicks a message in flight that no node covers (stepping the paused run
/// until one flies clear of every node's circle), reads it, drops it.
async fn sim_inspect_message(c: &Client, base: &str) {
    paused_run(c, base, "seed=7&nodes=5", 1200).await;
    // The message farthest from every node, if it is clear of all of them
    // (its centre outside every node's circle, with a margin).
    let find_clear = r#"
        const bodies = [...document.querySelectorAll('#sim-ring .sim-node .body')].map(e => {
          const r = e.getBoundingClientRect();
          return [r.x + r.width / 2, r.y + r.height / 2, r.width / 2];
        });
        let best = null, clearance = 0;
        for (const d of document.querySelectorAll('#sim-ring circle.msg')) {
          const r = d.getBoundingClientRect();
          if (r.width === 0) continue;
          const x = r.x + r.width / 2, y = r.y + r.height / 2;
          const gap = Math.min(...bodies.map(([a, b, rad]) => Math.hypot(a - x, b - y) - rad));
          if (gap > clearance) { clearance = gap; best = d.getAttribute('data-msg-id'); }
        }
        return clearance > 8 ? best : null;
    "#;
    let mut id = None;
    for _ in 0..200 {
        let pick = c
            .execute(find_clear, vec![])
            .await
            .expect("look for a message");
        if let Some(found) = pick.as_str() {
            id = Some(found.to_string());
            break;
        }
        // One event further (the button's own handler; the sticky header
        // may cover the button where the page is scrolled to).
        c.execute("document.getElementById('sim-step-btn').click()", vec![])
            .await
            .expect("step");
    }
    let id = id.expect("a message in flight clear of every node within 200 steps");
    // By keyboard first: the dot is in the tab order, and Enter on it opens
    // the same inspector a click does.
    let dot = c
        .find(Locator::Css(&format!(
            "#sim-ring circle.msg[data-msg-id=\"{id}\"]"
        )))
        .await
        .expect("the message");
    assert_eq!(
        dot.attr("tabindex").await.ok().flatten().as_deref(),
        Some("0"),
        "a message is focusable"
    );
    dot.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("Enter on the message");
    wait_for(
        Duration::from_secs(10),
        "the inspector opened by Enter",
        || async { (attr(c, "#sim-msg", "data-state").await? == "in-flight").then_some(()) },
    )
    .await;
    click(c, "sim-msg-close").await;
    wait_for(Duration::from_secs(10), "the inspector closed", || async {
        attr(c, "#sim-msg", "hidden").await.map(|_| ())
    })
    .await;
    // Closing scrolled to the button: bring the ring back from under the
    // sticky header before clicking on it.
    c.execute(
        "document.getElementById('sim-ring').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .expect("scroll to the ring");
    c.find(Locator::Css(&format!(
        "#sim-ring circle.msg[data-msg-id=\"{id}\"]"
    )))
    .await
    .expect("the message")
    .click()
    .await
    .expect("click the message");
    wait_for(Duration::from_secs(10), "the message inspector", || async {
        (attr(c, "#sim-msg", "hidden").await.is_none()
            && attr(c, "#sim-msg", "data-state").await? == "in-flight")
            .then_some(())
    })
    .await;
    let kind = text(c, "#sim-msg-fields dd[data-field=type]")
        .await
        .unwrap_or_default();
    let term = text(c, "#sim-msg-fields dd[data-field=term]")
        .await
        .unwrap_or_default();
    assert!(
        !kind.is_empty() && term.parse::<u64>().is_ok(),
        "{kind} {term}"
    );
    screenshot(c, "screenshot-sim.png").await;
    click(c, "sim-msg-drop").await;
    wait_for(Duration::from_secs(10), "the message gone", || async {
        (attr(c, "#sim-msg", "data-state").await? == "gone").then_some(())
    })
    .await;
    wait_for(Duration::from_secs(5), "a cross where it died", || async {
        (count(c, "#sim-ring .drop-mark[data-cause=removed]").await > 0).then_some(())
    })
    .await;
    let url = c.current_url().await.expect("url");
    assert!(
        url.fragment()
            .is_some_and(|f| f.contains(&format!(":m{id}"))),
        "the drop is in the URL: {url}"
    );
    println!("simulator: inspected and dropped message #{id} ({kind}, term {term})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_end_to_end() {
    if let Some(why) = missing() {
        // run_tests.sh installs and builds everything first and sets this,
        // so on CI a missing piece is a failure, not a silent skip.
        if std::env::var_os("RAFT_KV_REQUIRE_BROWSER").is_some() {
            panic!("browser test cannot run: {why}");
        }
        println!("SKIPPED browser test: {why}");
        eprintln!("SKIPPED browser test: {why}");
        return;
    }
    // The whole run, with a new browser and a new cluster, is retried when
    // the browser stalled (see `navigate`); any other failure ends it.
    const RUNS: usize = 3;
    tokio::task::block_in_place(page_in_chromium);
    for run in 1..=RUNS {
        let (driver, client) = open_browser().await;
        let body = tokio::spawn({
            let c = client.clone();
            async move { live_view(&c).await }
        })
        .await;
        // Close the session even when the body failed, or Chromium stays
        // up; a browser that stopped answering is killed with its driver.
        let _ = tokio::time::timeout(Duration::from_secs(30), client.close()).await;
        let Err(e) = body else {
            return;
        };
        let log = driver.log_tail();
        drop(driver);
        if !e.is_panic() {
            panic!("browser test task failed: {e}");
        }
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        eprintln!("--- chromedriver log, run {run}/{RUNS} (last lines) ---\n{log}");
        if run < RUNS && message.starts_with(BROWSER_STALL) {
            eprintln!("run {run}/{RUNS}: {message}; again with a new browser");
            continue;
        }
        std::panic::resume_unwind(payload);
    }
}

/// A node with authentication enabled: root, and `alice` who may read
/// `app/` (holding `app/x = hello`). Set up through the REST API.
async fn start_auth_node() -> Cluster {
    const CLUSTER_TOKEN: &str = "browser-cluster-token";
    let opts = ClusterOptions {
        token: Some(CLUSTER_TOKEN.into()),
        extra_args: vec!["--web-dir".into(), dist_dir().display().to_string()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(1, opts).await;
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    assert_eq!(cluster.put(1, "app/x", "hello").await.status(), 200);
    let base = cluster.url(1);
    let calls: [(&str, String, Option<serde_json::Value>); 8] = [
        (
            "POST",
            "/auth/users".into(),
            Some(json!({"name": "root", "password": "rootpw"})),
        ),
        ("PUT", "/auth/users/root/roles/root".into(), None),
        (
            "POST",
            "/auth/users".into(),
            Some(json!({"name": "alice", "password": "alicepw"})),
        ),
        (
            "POST",
            "/auth/roles".into(),
            Some(json!({"name": "reader"})),
        ),
        (
            "POST",
            "/auth/roles/reader/permissions".into(),
            Some(json!({"prefix": "app/", "access": "read"})),
        ),
        ("PUT", "/auth/users/alice/roles/reader".into(), None),
        ("POST", "/auth/enable".into(), None),
        ("GET", "/auth/status".into(), None),
    ];
    for (method, path, body) in calls {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = cluster
            .http()
            .request(method.clone(), format!("{base}{path}"))
            .header("x-raft-cluster-token", CLUSTER_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("auth setup request");
        assert_eq!(r.status(), 200, "{method} {path}: {:?}", r.text().await);
    }
    cluster
}

/// The live view against a node with authentication: a read answered 401
/// brings up the login form; after logging in the same read shows the
/// value, and a key outside the user's permission is answered 403.
async fn login_view(c: &Client) {
    let cluster = start_auth_node().await;
    navigate(c, &format!("{}/#live", cluster.url(1))).await;
    tour_once(c).await;
    let get = |key: &'static str| async move {
        fill(c, "get-key", key).await;
        click(c, "get-btn").await;
        wait_for(Duration::from_secs(15), "the get's answer", || async {
            let op = text(c, "#result-op").await?;
            let status = attr(c, "#result", "data-status").await?;
            (op == format!("GET {key}") && status != "pending").then_some(())
        })
        .await;
        text(c, "#result-status").await.unwrap_or_default()
    };
    assert_eq!(get("app/x").await, "HTTP 401");
    wait_for(Duration::from_secs(10), "the login form", || async {
        attr(c, "#login-form", "hidden")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    fill(c, "login-user", "alice").await;
    fill(c, "login-password", "alicepw").await;
    click(c, "login-btn").await;
    wait_for(Duration::from_secs(15), "logged in", || async {
        (text(c, "#login-as").await? == "logged in as alice").then_some(())
    })
    .await;
    assert!(attr(c, "#login-form", "hidden").await.is_some());
    assert_eq!(get("app/x").await, "HTTP 200");
    assert_eq!(text(c, "#result-value").await.as_deref(), Some("hello"));
    assert_eq!(get("other/y").await, "HTTP 403");
    // The token is kept for the tab: a reload stays logged in.
    reload_and_wait_for_a_poll(c).await;
    assert_eq!(get("app/x").await, "HTTP 200");
    no_page_errors(c, "the live view with a login").await;
    println!("login: 401 → login form → alice reads app/x, 403 on other/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_logs_in_to_an_auth_enabled_node() {
    once_in_chromium(
        "browser login test",
        |c| async move { login_view(&c).await },
    )
    .await;
}

/// Runs `body` once in a new Chromium session (skipped, or failed under
/// `RAFT_KV_REQUIRE_BROWSER`, when the browser is missing), closes the
/// session whatever happened, and fails with the body's panic and the end
/// of chromedriver's log.
async fn once_in_chromium<F, Fut>(what: &str, body: F)
where
    F: FnOnce(fantoccini::Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if let Some(why) = missing() {
        if std::env::var_os("RAFT_KV_REQUIRE_BROWSER").is_some() {
            panic!("browser test cannot run: {why}");
        }
        println!("SKIPPED {what}: {why}");
        return;
    }
    tokio::task::block_in_place(page_in_chromium);
    let (driver, client) = open_browser().await;
    let result = tokio::spawn(body(client.clone())).await;
    // Close the session even when the body failed, or Chromium stays up.
    let _ = tokio::time::timeout(Duration::from_secs(30), client.close()).await;
    if let Err(e) = result {
        eprintln!(
            "--- chromedriver log (last lines) ---\n{}",
            driver.log_tail()
        );
        drop(driver);
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("{what} task failed: {e}"),
        }
    }
}

/// Chromedriver's DevTools passthrough (`POST
/// /session/{id}/goog/cdp/execute`): runs one Chrome DevTools Protocol
/// command in the session's page.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A browser without `EventSource` (removed before any page script runs,
/// as a proxy that buffers or an old browser would leave the page without
/// push streams): the Live view polls `/cluster` instead, says so, and
/// still shows the leader and serves a put and a get.
async fn polling_fallback(c: &Client) {
    let mut cluster = start_cluster().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    c.issue_cmd(DevTools {
        cmd: "Page.addScriptToEvaluateOnNewDocument",
        params: json!({"source": "delete window.EventSource;"}),
    })
    .await
    .expect("chromedriver runs DevTools commands");
    let base = cluster.url(leader);
    navigate(c, &format!("{base}/#live")).await;
    // A fresh profile shows the tour first (the test reloads the page
    // there: the script runs in every new document).
    tour_once(c).await;
    let has_event_source = c
        .execute("return typeof window.EventSource", vec![])
        .await
        .expect("script runs");
    assert_eq!(has_event_source, json!("undefined"), "EventSource removed");
    let shown = wait_for(
        Duration::from_secs(30),
        "3 members and 1 leader on the polling page",
        || page_leader(c),
    )
    .await;
    assert_eq!(shown, leader, "the polling page shows the cluster's leader");
    // It says it polls, and the polls go on.
    let polls_at = |c: &Client| {
        let c = c.clone();
        async move {
            (attr(&c, "#live-mode", "data-mode").await? == "poll").then_some(())?;
            attr(&c, "#live-mode", "data-polls")
                .await?
                .parse::<u64>()
                .ok()
        }
    };
    let first = wait_for(Duration::from_secs(10), "the polling pill", || polls_at(c)).await;
    let mode_text = text(c, "#live-mode").await.unwrap_or_default();
    assert!(
        mode_text.contains("polling"),
        "pill says polling: {mode_text:?}"
    );
    wait_for(Duration::from_secs(10), "more polls", || async {
        polls_at(c).await.filter(|&n| n > first).map(|_| ())
    })
    .await;

    let value = "polled";
    fill(c, "put-key", "fallback").await;
    fill(c, "put-value", value).await;
    click(c, "put-btn").await;
    let put = answer_of(c, "PUT").await;
    assert_eq!(put, "ok", "put failed: {:?}", text(c, "#result").await);
    fill(c, "get-key", "fallback").await;
    click(c, "get-btn").await;
    let got = answer_of(c, "GET").await;
    assert_eq!(got, "ok", "get failed: {:?}", text(c, "#result").await);
    assert_eq!(text(c, "#result-value").await.as_deref(), Some(value));
    no_page_errors(c, "the polling page").await;
}

/// Reloads the page and waits until its wasm has polled the cluster once.
async fn reload_and_wait_for_a_poll(c: &Client) {
    c.refresh().await.expect("reload");
    wait_for(
        Duration::from_secs(30),
        "the page after the reload",
        || async {
            text(c, "#live-updated")
                .await
                .filter(|t| t.starts_with("served by"))
        },
    )
    .await;
}

/// The status of the answer to the form's `op` (`PUT`, `GET`) once it is
/// no longer pending.
async fn answer_of(c: &Client, op: &str) -> String {
    let what = format!("the answer to the {op}");
    wait_for(Duration::from_secs(15), &what, || async {
        let shown = text(c, "#result-op").await?;
        let status = attr(c, "#result", "data-status").await?;
        (shown.starts_with(op) && status != "pending").then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_polls_without_push_streams() {
    once_in_chromium("browser polling test", |c| async move {
        polling_fallback(&c).await
    })
    .await;
}
