//! Several generator processes: the parent starts one child per part with
//! `--shard I/N`, waits until every child's connections are ready (a
//! `joined` line), samples the server, starts them all at once (a line on
//! their stdin), and adds up their results (a `result JSON` line each).

use std::process::Stdio;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::procstat;
use crate::report::Report;
use crate::run;
use crate::timeline::Timeline;
use crate::Common;

struct Part {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Part {
    /// The next line that starts with `tag`, without it.
    async fn expect(&mut self, tag: &str) -> Result<String> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(tag) {
                return Ok(rest.trim().to_string());
            }
        }
        bail!("a generator process ended before `{tag}`")
    }
}

/// Tells every child to go on.
async fn go(parts: &mut [Part]) -> Result<()> {
    for part in parts {
        let stdin = part.child.stdin.as_mut().context("child stdin")?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    Ok(())
}

/// Runs `scenario` over `common.processes` child processes.
pub async fn run(common: &Common, scenario: &'static str) -> Result<Report> {
    if scenario == "rolling" {
        bail!("rolling drives the cluster from one process; drop --processes");
    }
    let n = common.processes as usize;
    let pids = &common.server_pid;
    let sample = || (!pids.is_empty()).then(|| procstat::sample(pids));
    let server_idle = sample();
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let begun = std::time::Instant::now();
    let mut parts = Vec::with_capacity(n);
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args(&args)
            .arg("--shard")
            .arg(format!("{i}/{n}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start a generator process")?;
        let stdout = child.stdout.take().context("child stdout")?;
        parts.push(Part {
            child,
            lines: BufReader::new(stdout).lines(),
        });
    }
    for part in &mut parts {
        part.expect("joined").await?;
    }
    let join_seconds = begun.elapsed().as_secs_f64();
    let server_joined = sample();
    let timeline = Arc::new(Timeline::new(run::timeline_seconds(common)));
    go(&mut parts).await?;
    timeline.begin();
    let bar = run::progress(timeline.clone(), common.duration);
    // Idle connections are sampled while they are held.
    let mut server_held = None;
    if scenario == "idle" {
        for part in &mut parts {
            part.expect("held").await?;
        }
        server_held = sample();
        go(&mut parts).await?;
    }
    let mut wires: Vec<Value> = Vec::with_capacity(n);
    for part in &mut parts {
        let line = part.expect("result").await?;
        wires.push(serde_json::from_str(&line)?);
        part.child.wait().await?;
    }
    bar.finish_and_clear();
    let connections = wires
        .iter()
        .map(|w| w["connections"].as_u64().unwrap_or(0) as usize)
        .sum();
    let params = wires
        .first()
        .map(|w| w["params"].clone())
        .unwrap_or_default();
    let mut report = Report::new(scenario, params, connections, common.duration)?;
    report.timeline = Some(timeline);
    for wire in &wires {
        report.absorb(wire);
    }
    report.server_idle = server_idle;
    report.server_joined = server_joined;
    report.join_seconds = Some(join_seconds);
    report.server_end = sample();
    if server_held.is_some() {
        report.server_joined = server_held;
        report.server_end = server_held;
    }
    if let Some(obj) = report.params.as_object_mut() {
        obj.insert("processes".into(), n.into());
    }
    Ok(report)
}
