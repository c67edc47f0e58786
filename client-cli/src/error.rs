//! The CLI's error type and its mapping to process exit codes.

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: `get` (or `delete`) of a key that does not exist.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: bad command line (clap's own code for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no leader, every server unreachable, or the deadline passed.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code: the server refused the request or failed in another way.
pub const EXIT_SERVER_ERROR: u8 = 4;
/// Exit code: a conditional write (`--if-index`, `--if-absent`) whose
/// condition did not hold; nothing was written.
pub const EXIT_PRECONDITION_FAILED: u8 = 5;

/// The exit codes as shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  key not found (get of a missing key)
  2  usage error (bad arguments)
  3  cluster unavailable (no leader, all servers unreachable, or --timeout passed)
  4  other server error (request rejected, unexpected answer)
  5  precondition failed (--if-index/--if-absent did not hold; nothing written)";

/// Why a command failed. Each variant's message is one line, printed after
/// `error: ` on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The key does not exist.
    #[error("key {} not found", Quoted(.0))]
    NotFound(String),
    /// A conditional write's condition did not hold (HTTP 412).
    #[error(
        "precondition failed: key {} {}; nothing was written",
        Quoted(.key),
        match .mod_index {
            Some(i) => format!("has modification index {i}"),
            None => "is absent".to_string(),
        }
    )]
    PreconditionFailed {
        /// The key.
        key: String,
        /// Its modification index when the write was applied (`None`:
        /// absent).
        mod_index: Option<u64>,
    },
    /// No server could serve the request before the deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error status other than "unavailable".
    #[error("server answered {status}: {message}")]
    Server {
        /// The HTTP status code.
        status: u16,
        /// The server's one-line explanation.
        message: String,
    },
    /// The server's answer could not be understood.
    #[error("unexpected answer from {server}: {message}")]
    BadResponse {
        /// Which server answered.
        server: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// An argument that clap accepted but the command cannot use.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::PreconditionFailed { .. } => EXIT_PRECONDITION_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unavailable(_) => EXIT_UNAVAILABLE,
            CliError::Server { .. } | CliError::BadResponse { .. } | CliError::Output(_) => {
                EXIT_SERVER_ERROR
            }
        }
    }
}

/// Makes any text safe for a one-line message: newlines and other control
/// characters become spaces, and very long text is cut.
pub fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect();
        out.push_str("...");
    }
    out
}

/// Displays a key in quotes with control characters escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_mapping() {
        assert_eq!(CliError::NotFound("k".into()).exit_code(), 1);
        assert_eq!(CliError::Usage("bad".into()).exit_code(), 2);
        assert_eq!(CliError::Unavailable("no leader".into()).exit_code(), 3);
        let rejected = CliError::Server {
            status: 400,
            message: "bad key".into(),
        };
        assert_eq!(rejected.exit_code(), 4);
        let bad = CliError::BadResponse {
            server: "http://x".into(),
            message: "not json".into(),
        };
        assert_eq!(bad.exit_code(), 4);
        let failed = CliError::PreconditionFailed {
            key: "k".into(),
            mod_index: Some(7),
        };
        assert_eq!(failed.exit_code(), 5);
        assert_eq!(
            failed.to_string(),
            "precondition failed: key \"k\" has modification index 7; nothing was written"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = CliError::NotFound("a\nb".into());
        assert_eq!(e.to_string(), "key \"a\\nb\" not found");
        assert_eq!(one_line("  two\nlines\r\n"), "two lines");
        assert!(one_line(&"x".repeat(1000)).len() < 400);
    }

    #[test]
    fn help_lists_every_code() {
        for code in [
            EXIT_OK,
            EXIT_NOT_FOUND,
            EXIT_USAGE,
            EXIT_UNAVAILABLE,
            EXIT_SERVER_ERROR,
            EXIT_PRECONDITION_FAILED,
        ] {
            assert!(EXIT_CODES_HELP.contains(&format!("  {code}  ")));
        }
    }
}
