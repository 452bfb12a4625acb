//! `cargo xtask bench hostile [--base DETECTOR]`: the hostile-input issue's reproducers, each
//! run by the release `detector` of this tree and, with `--base`, by another build (the code
//! before the fix) right after it, so that both columns come from one run of the same machine.
//! Wall time and peak RSS of each child are measured by a forked helper (`wait4`), as in
//! `tests/tests/badinput.rs`. Prints a Markdown table (BENCHMARKS.md, "Hostile input").

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// Forks, execs `argv[1..]` with a time limit and an address-space limit (the code before the
/// fix reached 23 GB on the 8-level alias bomb: other people share the machine), reaps it with
/// `wait4`, prints `maxrss_kib seconds exit_code` (exit -9: killed at the time limit).
const MEASURE: &str = r#"
import os, sys, time, signal, resource
limit = float(os.environ["LIMIT_S"])
mem = int(os.environ["LIMIT_AS"])
t = time.monotonic()
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGALRM, lambda *a: os.kill(pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, limit)
_, st, ru = os.wait4(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
with open(os.environ["RUSAGE_OUT"], "w") as f:
    f.write(f"{ru.ru_maxrss} {time.monotonic() - t} {os.waitstatus_to_exitcode(st)}")
"#;

/// Seconds a case may run before it is killed (and reported so).
const LIMIT_S: u64 = 120;
/// Address space a case may map (`RLIMIT_AS`): past it, allocations fail.
const LIMIT_AS: u64 = 8 << 30;

fn bomb(levels: usize) -> String {
    let mut s = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

fn rule(cond: &str) -> String {
    format!("rules:\n  - id: r\n    title: R\n    severity: low\n    condition:\n{cond}")
}

fn connect(i: usize) -> String {
    format!(
        "{{\"ts\":18446744073709551615,\"kind\":\"connect\",\"process\":{{\"pid\":7,\"tgid\":7,\"ppid\":1,\"start\":1,\"uid\":0,\"gid\":0,\"user\":\"root\",\"comm\":\"scan\",\"exe\":\"/usr/bin/scan\",\"argv\":[\"scan\"],\"cgroup_id\":1}},\"net\":{{\"protocol\":\"tcp\",\"family\":4,\"direction\":\"outbound\",\"src_addr\":\"10.0.0.1\",\"src_port\":40000,\"dst_addr\":\"10.9.{}.{}\",\"dst_port\":443,\"outcome\":\"in_progress\",\"sock\":{i}}}}}\n",
        i / 200,
        i % 200 + 1
    )
}

/// `(name, file name, contents, detector arguments with {F} for the file)`.
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>, Vec<&'static str>)> {
    let check = vec!["rules", "check", "--no-default-rules", "{F}"];
    let test = vec!["rules", "test", "--no-default-rules", "{F}"];
    let run = vec!["run", "--config", "{F}", "--state-dir", "{D}/state"];
    let globs = (0..150_000)
        .map(|i| format!("'/opt/{i:08}/**/bin/x*[ab]'"))
        .collect::<Vec<_>>()
        .join(", ");
    let http = "sinks:\n  - http:\n      url: http://127.0.0.1:9/\n";
    vec![
        ("alias bomb, 7 levels", "alias7.yaml", bomb(7).into(), check.clone()),
        ("alias bomb, 8 levels", "alias8.yaml", bomb(8).into(), check.clone()),
        ("alias bomb, 7 levels (`rules test`)", "alias7.yaml", bomb(7).into(), test.clone()),
        ("NUL between two rules", "nul.yaml", b"rules:\n  - id: t1\n    title: T\n    severity: low\n    condition: {kind: exec}\n\x00\n  - id: t2\n    title: T\n    severity: low\n    condition: {kind: nope_bad}\n".to_vec(), check.clone()),
        ("duplicate key in a condition", "dup.yaml", rule("      kind: cred_open\n      kind: exec\n").into(), check.clone()),
        ("config `sinks:` + 50 k `[`", "nest50k.yaml", format!("sinks: {}", "[".repeat(50_000)).into(), run.clone()),
        ("config `sinks:` + 200 k `[`", "nest200k.yaml", format!("sinks: {}", "[".repeat(200_000)).into(), run.clone()),
        ("4.6 MB glob list", "glob5m.yaml", rule(&format!("      process.exe: {{glob: [{globs}]}}\n")).into(), check.clone()),
        ("11 MB regex", "regex11m.yaml", rule(&format!("      process.exe: {{regex: '{}'}}\n", "a".repeat(11 << 20))).into(), check.clone()),
        ("50 MB regex", "regex50m.yaml", rule(&format!("      process.exe: {{regex: '{}'}}\n", "a".repeat(50 << 20))).into(), check.clone()),
        ("1 M-item list", "list1m.yaml", format!("lists:\n  l:\n{}", (0..1_000_000).map(|i| format!("    - {i}\n")).collect::<String>()).into(), check.clone()),
        ("rule-test `ts: 585years`", "ts585.yaml", format!("{}tests:\n  - rule: r\n    cases:\n      - name: far\n        expect: 1\n        events:\n          - {{kind: exec, ts: 585years, process: {{pid: 1, tgid: 1, ppid: 0, start: 1, uid: 0, gid: 0, comm: x, exe: /x, argv: [], cgroup_id: 0}}}}\n", rule("      kind: exec\n")).into(), test.clone()),
        ("config `retry: 1ns`", "retry.yaml", format!("{http}      retry: {{initial: 1ns, max: 1ns}}\n").into(), run.clone()),
        ("config `timeout: 0s`", "timeout.yaml", format!("{http}      timeout: 0s\n").into(), run.clone()),
        ("config file sink `path: /`", "filesink.yaml", b"sinks:\n  - file: {path: /}\n".to_vec(), run.clone()),
        ("replay: 80 connects at ts = u64::MAX", "tsmax80.ndjson", (0..80).map(connect).collect::<String>().into(), vec!["replay", "{F}"]),
    ]
}

/// One measured run: exit code, seconds, peak RSS (KiB), first stderr line, stdout.
struct Ran {
    code: i32,
    secs: f64,
    rss_kib: u64,
    first: String,
    stdout: String,
}

fn measure(bin: &Path, dir: &Path, file: &Path, args: &[&str]) -> Result<Ran> {
    let usage = dir.join("rusage");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let argv: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{F}", &file.display().to_string())
                .replace("{D}", &dir.display().to_string())
        })
        .collect();
    let st = Command::new("python3")
        .args(["-c", MEASURE])
        .arg(bin)
        .args(&argv)
        .env("RUST_LOG", "warn")
        .env("RUSAGE_OUT", &usage)
        .env("LIMIT_S", LIMIT_S.to_string())
        .env("LIMIT_AS", LIMIT_AS.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .status()
        .context("python3")?;
    if !st.success() {
        bail!("measuring helper failed: {st}");
    }
    let u = std::fs::read_to_string(&usage)?;
    let f: Vec<&str> = u.split_whitespace().collect();
    let stderr = String::from_utf8_lossy(&std::fs::read(&err)?).into_owned();
    Ok(Ran {
        code: f[2].parse()?,
        secs: f[1].parse()?,
        rss_kib: f[0].parse()?,
        first: stderr.lines().next().unwrap_or_default().to_string(),
        stdout: String::from_utf8_lossy(&std::fs::read(&out)?).into_owned(),
    })
}

fn cell(r: &Ran, dir: &Path) -> String {
    let outcome = match r.code {
        -9 => format!("killed at {LIMIT_S} s"),
        c => {
            let fan = r.stdout.matches("\"service-fan-out-burst\"").count();
            let msg = if fan > 0 {
                format!("{fan} fan-out alert(s)")
            } else {
                r.first
                    .replace(&format!("{}/", dir.display()), "")
                    .chars()
                    .take(90)
                    .collect()
            };
            format!("exit {c}: {}", msg.replace('|', "\\|"))
        }
    };
    format!(
        "{:.3} s, {:.1} MiB — {outcome}",
        r.secs,
        r.rss_kib as f64 / 1024.0
    )
}

/// Runs the cases with `new` and, when given, `base` right after it.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut base: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--base" => base = it.next().map(PathBuf::from),
            other => bail!("unknown argument `{other}` (--base DETECTOR)"),
        }
    }
    let release = super::build_release(root, &[("detector-user", "detector")])?;
    let new = release.join("detector");
    let dir = super::target_dir(root).join("bench-hostile");
    std::fs::create_dir_all(&dir)?;
    println!("| reproducer | input | this tree | base |");
    println!("|---|---:|---|---|");
    for (name, file, body, argv) in cases() {
        let f = dir.join(file);
        std::fs::write(&f, &body)?;
        let n = measure(&new, &dir, &f, &argv)?;
        let b = match &base {
            Some(b) => cell(&measure(b, &dir, &f, &argv)?, &dir),
            None => "—".into(),
        };
        println!("| {name} | {} B | {} | {b} |", body.len(), cell(&n, &dir));
    }
    Ok(())
}
