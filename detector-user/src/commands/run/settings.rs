//! The effective settings of `detector run`: each from its flag, else the config file, else
//! its default. Start-up and every SIGHUP reload go through [`prepare`], so the two cannot
//! disagree on precedence, and a reload validates exactly what start-up would.

use std::{path::PathBuf, time::Duration};

use super::RunArgs;
use crate::{
    commands::{
        capture_opts::CaptureArgs,
        detect_opts::{DetectArgs, Detection},
    },
    config::AgentConfig,
    engine::IdMode,
    sinks::DEFAULT_SHUTDOWN_TIMEOUT,
    sources::kernel::KernelOptions,
};

/// Where the agent keeps its state (fingerprint key, credential ledger) when neither
/// `--state-dir` nor the config's `run.state_dir` says.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/detector";

/// What `detector run` runs with, flags and config file resolved.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Detection flags: `--rules` then the config's `run.rules` (both load);
    /// `--identities`, else `run.identities`.
    pub(crate) detect: DetectArgs,
    /// Capture flags: `--watch-list`, else `run.watch_list`.
    pub(crate) capture: CaptureArgs,
    /// `--state-dir`, else `run.state_dir`, else [`DEFAULT_STATE_DIR`].
    pub(crate) state_dir: PathBuf,
    /// `--metrics-addr`, else `run.metrics_addr`, else no endpoint.
    pub(crate) metrics_addr: Option<String>,
    /// `run.shutdown_timeout`, else [`DEFAULT_SHUTDOWN_TIMEOUT`] (no flag).
    pub(crate) shutdown_timeout: Duration,
    /// The ledger's database, or none when `--no-ledger` or `ledger.enabled: false`:
    /// `ledger.path`, else `ledger.db` in the state dir.
    pub(crate) ledger: Option<PathBuf>,
}

impl Settings {
    /// Resolves the flags over the config over the defaults, per setting.
    pub(crate) fn resolve(args: &RunArgs, cfg: &AgentConfig) -> Settings {
        let mut detect = args.detect.clone();
        detect.rules.extend(cfg.run.rules.iter().cloned());
        detect.identities = detect
            .identities
            .take()
            .or_else(|| cfg.run.identities.clone());
        let mut capture = args.capture.clone();
        capture.watch_list = capture
            .watch_list
            .take()
            .or_else(|| cfg.run.watch_list.clone());
        let state_dir = args
            .state_dir
            .clone()
            .or_else(|| cfg.run.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let ledger = (cfg.ledger.enabled && !args.no_ledger).then(|| {
            cfg.ledger
                .path
                .clone()
                .unwrap_or_else(|| crate::ledger::default_path(&state_dir))
        });
        Settings {
            detect,
            capture,
            metrics_addr: args
                .metrics_addr
                .clone()
                .or_else(|| cfg.run.metrics_addr.clone()),
            shutdown_timeout: cfg.run.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            ledger,
            state_dir,
        }
    }
}

/// Everything start-up and a reload load before touching the running agent.
pub(crate) struct Prepared {
    /// The config file as read (the sinks and ledger options come from it).
    pub(crate) config: AgentConfig,
    /// The effective settings.
    pub(crate) settings: Settings,
    /// Rules, identities and baseline, loaded (identities.yaml read and parsed once, for
    /// both the engine and the resolver).
    pub(crate) detection: Detection,
    /// Hook groups and watch patterns (the watch list file read).
    pub(crate) kernel: KernelOptions,
}

/// Reads the config file `--config` names (else the defaults), resolves the settings and
/// loads everything they name; any error leaves nothing half-loaded. Start-up and every
/// reload come through here.
pub(crate) fn prepare(args: &RunArgs, host: &str) -> anyhow::Result<Prepared> {
    let config = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    let settings = Settings::resolve(args, &config);
    let kernel = settings.capture.kernel_options()?;
    let detection = settings.detect.build_detection(IdMode::Random, host)?;
    Ok(Prepared {
        config,
        settings,
        detection,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// `detector run ARGS` as parsed by the real command line.
    fn run_args(args: &[&str]) -> RunArgs {
        let mut argv = vec!["detector", "run"];
        argv.extend_from_slice(args);
        match crate::cli::Cli::try_parse_from(argv)
            .expect("valid flags")
            .command
        {
            crate::cli::Command::Run(a) => a,
            _ => unreachable!("parsed `run`"),
        }
    }

    fn config(yaml: &str) -> AgentConfig {
        AgentConfig::parse(yaml, std::path::Path::new("test.yaml")).expect("valid config")
    }

    const FULL: &str = "run:\n  state_dir: /cfg/state\n  rules: [/cfg/rules]\n  \
        identities: /cfg/ids.yaml\n  watch_list: /cfg/watch\n  shutdown_timeout: 7s\n  \
        metrics_addr: \"9100\"\nledger:\n  path: /cfg/ledger.db\n";

    #[test]
    fn defaults_without_flags_or_config() {
        let s = Settings::resolve(&run_args(&[]), &AgentConfig::default());
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.metrics_addr, None);
        assert_eq!(s.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(
            s.ledger,
            Some(crate::ledger::default_path(std::path::Path::new(
                DEFAULT_STATE_DIR
            )))
        );
        assert_eq!(s.detect.identities, None);
        assert!(s.detect.rules.is_empty());
        assert_eq!(s.capture.watch_list, None);
    }

    #[test]
    fn config_beats_defaults() {
        let s = Settings::resolve(&run_args(&[]), &config(FULL));
        assert_eq!(s.state_dir, PathBuf::from("/cfg/state"));
        assert_eq!(s.metrics_addr.as_deref(), Some("9100"));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(7));
        assert_eq!(s.ledger, Some(PathBuf::from("/cfg/ledger.db")));
        assert_eq!(s.detect.identities, Some(PathBuf::from("/cfg/ids.yaml")));
        assert_eq!(s.detect.rules, vec![PathBuf::from("/cfg/rules")]);
        assert_eq!(s.capture.watch_list, Some(PathBuf::from("/cfg/watch")));
        // Without a ledger path, the ledger lives in the configured state dir.
        let s = Settings::resolve(&run_args(&[]), &config("run:\n  state_dir: /cfg/state\n"));
        assert_eq!(
            s.ledger,
            Some(crate::ledger::default_path(std::path::Path::new(
                "/cfg/state"
            )))
        );
    }

    #[test]
    fn flags_beat_config() {
        let a = run_args(&[
            "--state-dir",
            "/flag/state",
            "--metrics-addr",
            "9200",
            "--identities",
            "/flag/ids.yaml",
            "--rules",
            "/flag/rules",
            "--watch-list",
            "/flag/watch",
            "--no-ledger",
        ]);
        let s = Settings::resolve(&a, &config(FULL));
        assert_eq!(s.state_dir, PathBuf::from("/flag/state"));
        assert_eq!(s.metrics_addr.as_deref(), Some("9200"));
        assert_eq!(s.detect.identities, Some(PathBuf::from("/flag/ids.yaml")));
        // Rules add up: the flag's first, then the config's.
        assert_eq!(
            s.detect.rules,
            vec![PathBuf::from("/flag/rules"), PathBuf::from("/cfg/rules")]
        );
        assert_eq!(s.capture.watch_list, Some(PathBuf::from("/flag/watch")));
        assert_eq!(s.ledger, None);
        // `ledger.enabled: false` turns it off as well.
        let s = Settings::resolve(&run_args(&[]), &config("ledger:\n  enabled: false\n"));
        assert_eq!(s.ledger, None);
    }

    /// What start-up and reload both call: the config file is read anew each time, and the
    /// identities it names reach the engine and the resolver from one parse.
    #[test]
    fn prepare_reads_the_config_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = dir.path().join("identities.yaml");
        std::fs::write(
            &ids,
            "identities:\n  - name: web\n    match: [{exe: /usr/bin/web}]\n",
        )
        .expect("write");
        let cfg = dir.path().join("config.yaml");
        let write = |yaml: String| std::fs::write(&cfg, yaml).expect("write");
        write(format!("run:\n  identities: {}\n", ids.display()));
        let a = run_args(&["--config", cfg.to_str().expect("utf-8")]);
        let p = prepare(&a, "h").expect("loads");
        assert_eq!(p.settings.detect.identities.as_deref(), Some(ids.as_path()));
        assert_eq!(p.detection.identities, 1);
        assert_eq!(p.detection.resolver.shared_config().len(), 1);
        // An edit (what a SIGHUP then reloads) is seen by the next call.
        write("run:\n  shutdown_timeout: 3s\n".into());
        let p = prepare(&a, "h").expect("loads");
        assert_eq!(p.settings.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(p.detection.identities, 0);
        // A broken file fails the whole load (the running set stays).
        write("run:\n  shutdown_timeout: forever\n".into());
        assert!(prepare(&a, "h").is_err());
    }
}
