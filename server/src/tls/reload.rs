//! Certificates rotated without a restart: the files are read again when
//! one of them changes (checked every [`CHECK_EVERY`]) or on SIGHUP. New
//! handshakes use what was read; connections already open, the peer
//! streams among them, go on with what they started with, so the cluster
//! stays up. Files that cannot be used (a key written before its
//! certificate, a half-copied file) change nothing: the error is logged
//! and the next change or SIGHUP tries again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use super::Tls;
use crate::metrics::Metrics;

/// How often the files' modification times and sizes are compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a version of a file: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(tls: &Tls) -> Vec<Stamp> {
    tls.files
        .all()
        .into_iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Reloads `tls` on change or SIGHUP until `stop` completes.
pub async fn watch(tls: Arc<Tls>, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot listen for SIGHUP (certificates are still re-read on change): {e}");
            None
        }
    };
    let mut seen = stamps(&tls);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let why = tokio::select! {
            _ = &mut stop => return,
            _ = hangup => "SIGHUP",
            _ = tick.tick() => {
                let now = stamps(&tls);
                if now == seen {
                    continue;
                }
                seen = now;
                "a certificate file changed"
            }
        };
        match tls.reload() {
            Ok(()) => {
                Metrics::inc(&metrics.tls_reloads);
                info!("{why}: certificates read again; new connections use them");
            }
            Err(e) => {
                Metrics::inc(&metrics.tls_reload_errors);
                error!("{why}, but the certificates cannot be used (the previous ones stay in use): {e}");
            }
        }
    }
}
