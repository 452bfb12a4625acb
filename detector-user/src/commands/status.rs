//! `detector status`: asks a running agent's `/health` endpoint (`detector run --metrics-addr`)
//! which programs are attached. Exit 0 when green, 1 when red (a program of an enabled group is
//! not attached), 2 when the agent cannot be reached.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{config::AgentConfig, metrics};

/// Arguments of `detector status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The agent's metrics address (`PORT`, `:PORT` = loopback, or `HOST:PORT`) [default: the
    /// config's `run.metrics_addr`].
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// Agent config (YAML) to take `run.metrics_addr` from.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the health document (JSON) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `detector status`.
pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let addr = match (&args.metrics_addr, &args.config) {
        (Some(a), _) => a.clone(),
        (None, Some(p)) => AgentConfig::read(p)?
            .run
            .metrics_addr
            .with_context(|| format!("{}: no run.metrics_addr", p.display()))?,
        (None, None) => anyhow::bail!("give --metrics-addr or --config"),
    };
    let addr = metrics::parse_listen_addr(&addr)?;
    let url = format!("http://{addr}/health");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = rt.block_on(async {
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?
            .get(&url)
            .send()
            .await?;
        r.text().await
    });
    let body = body.with_context(|| format!("querying {url}"))?;
    let health: metrics::Health =
        serde_json::from_str(&body).with_context(|| format!("{url}: not a health document"))?;
    if args.json {
        println!("{body}");
    } else {
        println!(
            "health: {} ({} of {} programs attached)",
            health.status,
            health.attached,
            health.programs.len()
        );
        for p in &health.programs {
            let state = match (p.attached, p.required, &p.fallback) {
                (true, _, None) => "attached",
                (true, _, Some(_)) => "fallback",
                (false, true, _) => "MISSING",
                (false, false, _) => "off",
            };
            let why = match (&p.fallback, p.reason.as_deref()) {
                (Some(f), _) => f.as_str(),
                (None, r) => r.unwrap_or(""),
            };
            println!(
                "  {state:<9} {:<8} {:<28} {} {why}",
                p.group, p.program, p.hook
            );
        }
    }
    Ok(if health.is_red() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
