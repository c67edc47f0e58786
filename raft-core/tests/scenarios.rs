//! Scenario tests: readable scripts in `tests/scenario/*.txt`, each command
//! followed by `----` and the output it must produce (the style of
//! etcd-raft's datadriven interaction tests).
//!
//! Commands (node ids are numbers; `L` is the node asked, usually the leader):
//! `cluster N [prevote=off] [checkquorum=off] [batch=1]`, `campaign ID`,
//! `tick ID [N]`, `process [ID...]` (carry out the nodes' `Ready`s without
//! delivering), `deliver`, `stabilize`, `drop`,
//! `propose L KEY VALUE`, `read L CTX`, `transfer L TO`, `compact ID`,
//! `crash ID`, `restart ID`, `isolate ID`, `cut FROM TO`, `heal`, `status`,
//! `log ID...`, `get ID KEY`, `fault ID NAME`; membership:
//! `join ID` (a new node, empty disk), `wipe ID [bootstrap]` (crash and
//! empty the disk, or put the founders' state back on it),
//! `add-learner L ID [auto]`, `promote L ID`, `remove L ID`,
//! `replace L REMOVE PROMOTE` (each with an optional `force`),
//! `config [ID...]` (the configuration in force on each node) and
//! `progress L` (the leader's view of each member).
//!
//! `ready-verbose on|off`: from then on, `process` and `stabilize` print
//! each `Ready` in full through `Ready::describe` (`ID: Ready`, then the
//! soft and hard state, whether it must be persisted, the snapshot and
//! entries to persist, the messages sent now and those sent after the
//! write, the committed entries, reads and lost logs) instead of the
//! one-line summaries (`became`, `applied`, `read`, ...). Messages on the
//! wire and the `log` command use the same formatter.
//!
//! Rewrite the expected output after a deliberate change with
//! `RAFT_SCENARIO_REWRITE=1 cargo test -p raft-core --test scenarios`
//! and review the diff.

#[path = "scenario/harness.rs"]
mod harness;

use std::path::Path;

use harness::Harness;
use raft_core::ConfChange;

struct Block {
    command: String,
    expected: String,
    /// Comment lines before the command, kept on rewrite.
    preamble: String,
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    let mut preamble = String::new();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            preamble.push_str(line);
            preamble.push('\n');
            continue;
        }
        let command = line.to_string();
        assert_eq!(
            lines.next(),
            Some("----"),
            "expected ---- after `{command}`"
        );
        let mut expected = String::new();
        while let Some(l) = lines.peek() {
            if l.is_empty() {
                break;
            }
            expected.push_str(l);
            expected.push('\n');
            lines.next();
        }
        blocks.push(Block {
            command,
            expected,
            preamble: std::mem::take(&mut preamble),
        });
    }
    blocks
}

fn id(arg: Option<&&str>) -> Result<u64, String> {
    arg.ok_or("missing node id")?
        .parse()
        .map_err(|e| format!("bad node id: {e}"))
}

fn run(h: &mut Option<Harness>, command: &str) -> Result<String, String> {
    let args: Vec<&str> = command.split_whitespace().collect();
    let mut out = String::new();
    if args[0] == "cluster" {
        let n = id(args.get(1))?;
        let pre_vote = !args.contains(&"prevote=off");
        let check_quorum = !args.contains(&"checkquorum=off");
        // `batch=1`: one entry per append message, for fine-grained scripts.
        let max_batch = if args.contains(&"batch=1") {
            1
        } else {
            1 << 20
        };
        *h = Some(Harness::new(n, pre_vote, check_quorum, max_batch));
        return Ok(out);
    }
    let h = h.as_mut().ok_or("start with `cluster N`")?;
    match args[0] {
        "campaign" => h.campaign(id(args.get(1))?)?,
        "tick" => {
            let times = args
                .get(2)
                .map_or(Ok(1), |s| s.parse())
                .map_err(|_| "bad count")?;
            h.tick(id(args.get(1))?, times)?
        }
        "stabilize" => h.stabilize(&mut out),
        "process" => {
            let ids = args[1..]
                .iter()
                .map(|a| id(Some(a)))
                .collect::<Result<Vec<_>, _>>()?;
            h.process_readies(&ids, &mut out);
        }
        "ready-verbose" => match args.get(1) {
            Some(&"on") => h.set_verbose_ready(true),
            Some(&"off") => h.set_verbose_ready(false),
            _ => return Err("ready-verbose on|off".into()),
        },
        "deliver" => {
            h.deliver(&mut out);
        }
        "drop" => h.drop_queued(&mut out),
        "propose" => {
            let (k, v) = (args.get(2).ok_or("key")?, args.get(3).ok_or("value")?);
            out = h.propose(id(args.get(1))?, k, v)? + "\n";
        }
        "read" => {
            let ctx = id(args.get(2))?;
            out = h.read(id(args.get(1))?, ctx)? + "\n";
        }
        "transfer" => out = h.transfer(id(args.get(1))?, id(args.get(2))?)? + "\n",
        "compact" => out = h.compact(id(args.get(1))?)? + "\n",
        "crash" => h.crash(id(args.get(1))?)?,
        "restart" => h.restart(id(args.get(1))?)?,
        "join" => h.join(id(args.get(1))?)?,
        "wipe" => h.wipe(id(args.get(1))?, args.contains(&"bootstrap"))?,
        "add-learner" | "promote" | "remove" | "replace" => {
            let leader = id(args.get(1))?;
            let change = match args[0] {
                "add-learner" => {
                    let new = id(args.get(2))?;
                    ConfChange::AddLearner {
                        id: new,
                        address: format!("n{new}"),
                        promote: args.contains(&"auto"),
                    }
                }
                "promote" => ConfChange::Promote {
                    id: id(args.get(2))?,
                },
                "remove" => ConfChange::Remove {
                    id: id(args.get(2))?,
                },
                _ => ConfChange::Replace {
                    remove: id(args.get(2))?,
                    promote: id(args.get(3))?,
                },
            };
            out = h.conf_change(leader, change, args.contains(&"force"))? + "\n";
        }
        "config" => {
            let ids = args[1..]
                .iter()
                .map(|a| id(Some(a)))
                .collect::<Result<Vec<_>, _>>()?;
            h.config(&ids, &mut out);
        }
        "progress" => h.progress(id(args.get(1))?, &mut out)?,
        "isolate" => h.isolate(id(args.get(1))?),
        "cut" => h.cut(id(args.get(1))?, id(args.get(2))?),
        "heal" => h.heal(),
        "status" => h.status(&mut out),
        "log" => {
            for a in &args[1..] {
                h.log(id(Some(a))?, &mut out)?;
            }
        }
        "get" => h.get(id(args.get(1))?, args.get(2).ok_or("key")?, &mut out)?,
        "fault" => h.set_fault(id(args.get(1))?, args.get(2).ok_or("fault name")?)?,
        other => return Err(format!("unknown command `{other}`")),
    }
    Ok(out)
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let blocks = parse(&text);
    let rewrite = std::env::var_os("RAFT_SCENARIO_REWRITE").is_some();
    let mut harness = None;
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for b in &blocks {
        let mut actual = run(&mut harness, &b.command).unwrap_or_else(|e| format!("error: {e}\n"));
        if actual.is_empty() {
            actual = "ok\n".into();
        }
        if actual != b.expected {
            failures.push(format!(
                "`{}`\n--- expected\n{}--- actual\n{}",
                b.command, b.expected, actual
            ));
        }
        rewritten.push_str(&b.preamble);
        rewritten.push_str(&format!("{}\n----\n{}\n", b.command, actual));
    }
    if rewrite {
        std::fs::write(path, rewritten.trim_end().to_string() + "\n").map_err(|e| e.to_string())?;
        return Ok(());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} block(s) differ\n{}",
            path.display(),
            failures.len(),
            failures.join("\n")
        ))
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenario");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenario dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let errors: Vec<String> = files.iter().filter_map(|f| run_file(f).err()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
    assert!(files.len() >= 16, "scenario files missing: {files:?}");
}
