//! Hostile and broken input, end to end: the real `detector` binary (`rules check`, `rules
//! test`, the `run --config` validation that happens before anything is attached, `replay`)
//! on every reproducer of the hostile-input issue and the classes around them. Each case
//! asserts the exit code, the positioned message (`file:line:col`, printed once) and bounds on
//! wall time and peak memory of the child (`wait4`'s `ru_maxrss`).
//!
//! The bounds are generous guards against a regression by orders of magnitude (before: 4 GB
//! and 8 s for a 389-byte rule file, 45 s for a config of 200 k `[`, 5 GB for a 50 MB regex);
//! BENCHMARKS.md ("Hostile input") has the measured figures. The binary is the debug build
//! `cargo xtask test` makes.

use std::{
    fs::File,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use tests::{actor_path, Scratch};

/// Wall time any case may take (debug build, a loaded two-core machine).
const MAX_WALL: Duration = Duration::from_secs(20);
/// Peak RSS any case may reach.
const MAX_RSS_KB: i64 = 300 * 1024;

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(
        p.exists(),
        "detector binary missing at {} (cargo xtask test builds it)",
        p.display()
    );
    p
}

/// What a run of the binary gave.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
    max_rss_kb: i64,
}

/// Forks (a real fork, from a small process), execs `argv[1..]`, reaps it with `wait4` and
/// writes `maxrss_kib seconds exit_code` to the file named by `$RUSAGE_OUT`. The test process
/// cannot measure its own child: std spawns with vfork semantics, and Linux carries the
/// parent's high-water RSS (this harness holds the 50 MB inputs) into the child's `ru_maxrss`
/// at exec.
const MEASURE: &str = r#"
import os, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, st, ru = os.wait4(pid, 0)
with open(os.environ["RUSAGE_OUT"], "w") as f:
    f.write(f"{ru.ru_maxrss} {time.monotonic() - t} {os.waitstatus_to_exitcode(st)}")
"#;

/// Runs `detector args…` with output to files (no pipe to drain), measured by [`MEASURE`].
fn run(dir: &Scratch, args: &[&str]) -> Ran {
    let out = dir.path("stdout");
    let err = dir.path("stderr");
    let usage = dir.path("rusage");
    let _ = std::fs::remove_file(&usage);
    let st = Command::new("python3")
        .args(["-c", MEASURE])
        .arg(detector())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUSAGE_OUT", &usage)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .status()
        .expect("python3 (cargo xtask setup installs it)");
    assert!(st.success(), "measuring helper failed: {st}");
    let u = std::fs::read_to_string(&usage).unwrap();
    let f: Vec<&str> = u.split_whitespace().collect();
    Ran {
        code: f[2].parse::<i32>().ok().filter(|c| *c >= 0),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err).unwrap()).into_owned(),
        wall: Duration::from_secs_f64(f[1].parse().unwrap()),
        max_rss_kb: f[0].parse().unwrap(),
    }
}

/// One case: arguments (with `{F}` for the input file and `{D}` for the scratch dir), the
/// exit code, and the message: a regex the first stderr line must match, whose text (the
/// part after the position) must appear once.
struct Case {
    name: &'static str,
    file: Vec<u8>,
    args: &'static [&'static str],
    code: i32,
    want: String,
}

fn case(
    name: &'static str,
    file: impl Into<Vec<u8>>,
    args: &'static [&'static str],
    code: i32,
    want: &str,
) -> Case {
    Case {
        name,
        file: file.into(),
        args,
        code,
        want: want.to_string(),
    }
}

/// Runs every case, collecting every failure before failing (one run says all that is wrong).
fn check(name: &str, cases: Vec<Case>) {
    let dir = Scratch::new(name);
    let mut failures = Vec::new();
    for c in cases {
        let f = dir.path(&format!("{}.in", c.name));
        let fs = f.display().to_string();
        let ds = dir.path("").display().to_string();
        let ds = ds.trim_end_matches('/');
        // `{F}` and `{D}` in a file too (a config naming itself as a CA file).
        let body = match std::str::from_utf8(&c.file) {
            Ok(t) if t.contains('{') => t.replace("{F}", &fs).replace("{D}", ds).into_bytes(),
            _ => c.file.clone(),
        };
        std::fs::write(&f, &body).unwrap();
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.replace("{F}", &fs).replace("{D}", ds))
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&dir, &argv);
        let want = c
            .want
            .replace("{F}", &regex::escape(&fs))
            .replace("{D}", &regex::escape(ds));
        let re = regex::Regex::new(&want).unwrap();
        let first = r.stderr.lines().next().unwrap_or_default();
        let mut why = Vec::new();
        if r.code != Some(c.code) {
            why.push(format!("exit {:?}, want {}", r.code, c.code));
        }
        match re.find(first) {
            None => why.push(format!("first stderr line does not match /{want}/")),
            Some(m) => {
                // The message (after `file:line:col: `) is printed once.
                let text = m.as_str();
                let msg = text.rsplit_once(": ").map_or(text, |(_, m)| m);
                if !msg.is_empty() && r.stderr.matches(msg).count() != 1 {
                    why.push(format!(
                        "`{msg}` printed {} times",
                        r.stderr.matches(msg).count()
                    ));
                }
            }
        }
        if r.wall > MAX_WALL {
            why.push(format!("took {:?} (bound {MAX_WALL:?})", r.wall));
        }
        if r.max_rss_kb > MAX_RSS_KB {
            why.push(format!(
                "peak RSS {} KiB (bound {MAX_RSS_KB} KiB)",
                r.max_rss_kb
            ));
        }
        eprintln!(
            "{:<28} exit {:?} {:>7.3} s {:>7} KiB  {}",
            c.name,
            r.code,
            r.wall.as_secs_f64(),
            r.max_rss_kb,
            first.chars().take(160).collect::<String>()
        );
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n    args: {args:?}\n    stderr: {}",
                c.name,
                why.join("; "),
                r.stderr.chars().take(600).collect::<String>()
            ));
        }
        let _ = r.stdout;
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

const CHECK: &[&str] = &["rules", "check", "--no-default-rules", "{F}"];
const TEST: &[&str] = &["rules", "test", "--no-default-rules", "{F}"];
const RUN: &[&str] = &["run", "--config", "{F}", "--state-dir", "{D}/state"];

/// The issue's alias bomb: `a0: &a0 ["lol"]`, then ten aliases of the previous anchor per level.
fn alias_bomb(levels: usize) -> String {
    let mut s = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

fn rule(condition: &str) -> String {
    format!("rules:\n  - id: r\n    title: R\n    severity: low\n    condition:\n{condition}")
}

#[test]
fn hostile_rule_files() {
    let nul_mid = b"rules:\n  - id: t1\n    title: T\n    severity: low\n    condition: {kind: exec}\n\x00\n  - id: t2\n    title: T\n    severity: low\n    condition: {kind: nope_bad}\n".to_vec();
    let globs = |n: usize| {
        let items: Vec<String> = (0..n)
            .map(|i| format!("'/opt/{i:08}/**/bin/x*[ab]'"))
            .collect();
        rule(&format!(
            "      process.exe: {{glob: [{}]}}\n",
            items.join(", ")
        ))
    };
    let regex_of = |n: usize| {
        rule(&format!(
            "      process.exe: {{regex: '{}'}}\n",
            "a".repeat(n)
        ))
    };
    let big_list = |n: usize| {
        let mut s = String::from("lists:\n  l:\n");
        for i in 0..n {
            s.push_str(&format!("    - {i}\n"));
        }
        s
    };
    let mut expand = big_list(100_000);
    expand.push_str("rules:\n");
    for i in 0..11 {
        expand.push_str(&format!(
            "  - id: r{i}\n    title: R\n    severity: low\n    condition: {{net.dst_port: {{in: ['@l']}}}}\n"
        ));
    }
    let cases = vec![
        case("alias-bomb-389b", alias_bomb(7), CHECK, 1, r"^{F}:7:\d+: too large: more than 1000000 nodes in the file \(aliases count the nodes they repeat\)$"),
        case("alias-bomb-441b", alias_bomb(8), CHECK, 1, r"^{F}:7:\d+: too large: more than 1000000 nodes in the file"),
        case("alias-bomb-test", alias_bomb(8), TEST, 1, r"^{F}:7:\d+: too large: more than 1000000 nodes in the file"),
        case("nul-mid", nul_mid, CHECK, 1, r"^{F}:6:1: NUL byte: not allowed in YAML"),
        case("nul-first", b"\x00rules: 5\n".to_vec(), CHECK, 1, r"^{F}:1:1: NUL byte"),
        case("dup-key-in-condition", rule("      kind: cred_open\n      kind: exec\n"), CHECK, 1, r"^{F}:7:7: duplicate key `kind` \(first at line 6, column 7\)$"),
        case("dup-key-top", "rules: []\nrules: []\n", CHECK, 1, r"^{F}:2:1: duplicate key `rules`"),
        case("deep-flow-200k", format!("rules: {}", "[".repeat(200_000)), CHECK, 1, r"^{F}:1:\d+: (nested too deep|YAML syntax: recursion limit)"),
        case("deep-block-20k", format!("rules:\n{}", "- ".repeat(20_000)), CHECK, 1, r"^{F}:2:\d+: nested too deep: more than 64 levels"),
        case("glob-list-5mb", globs(150_000), CHECK, 1, r"^{F}:6:\d+: (glob patterns too large: more than 256 KiB in one test|sequence too long)"),
        case("glob-list-50mb", globs(1_400_000), CHECK, 1, r"^{F}:1:1: file larger than 16 MiB"),
        case("glob-bad", rule(&format!("      process.exe: {{glob: '{}['}}\n", "x".repeat(5000))), CHECK, 1, r"^{F}:6:\d+: bad glob `x{60}…` \(5001 bytes\): unclosed character class"),
        case("regex-11mb", regex_of(11 << 20), CHECK, 1, r"^{F}:6:\d+: scalar too long: 11534336 bytes, at most 64 KiB$"),
        case("regex-50mb", regex_of(50 << 20), CHECK, 1, r"^{F}:1:1: file larger than 16 MiB"),
        case("regex-compiles-big", rule("      process.exe: {regex: '(((a{100}){100}){100})'}\n"), CHECK, 1, r"^{F}:6:\d+: bad regex `\(\(\(a\{100\}\)\{100\}\)\{100\}\)`: compiles to more than 1 MiB \(the limit\)$"),
        case("regex-bad-long", rule(&format!("      process.exe: {{regex: '({}'}}\n", "y".repeat(100_000))), CHECK, 1, r"^{F}:6:\d+: scalar too long"),
        case("list-1m", big_list(1_000_000), CHECK, 1, r"^{F}:100003:\d+: sequence too long: more than 100000 items$"),
        case("list-expansion", expand, CHECK, 1, r"^{F}:\d+:\d+: lists expanded too often: more than 1000000 items over the rule set$"),
        case("invalid-utf8", b"rules:\n  - id: \xff\xfe\n".to_vec(), CHECK, 1, r"^{F}:2:9: invalid UTF-8 \(bytes 0xff 0xfe 0x0a\)$"),
        case("control-char", "rules:\n  - id: a\x1bb\n".as_bytes().to_vec(), CHECK, 1, r"^{F}:2:10: control character U\+001B"),
        case("tag", "rules: !!binary aGk=\n", CHECK, 1, r"^{F}:1:\d+: YAML tag `!!binary` is not supported \(only `!!str` on a scalar\)$"),
        case("ts-585years", format!("{}tests:\n  - rule: r\n    cases:\n      - name: far\n        expect: 1\n        events:\n          - {{kind: exec, ts: 585years}}\n", rule("      kind: exec\n")), TEST, 1, r"^{F}:13:13: ts: duration `585years` too large \(at most 584years"),
        case("missing-file", "", &["rules", "check", "{D}/nonexistent.yaml"], 2, r"^detector: error: {D}/nonexistent.yaml: No such file or directory \(os error 2\)$"),
    ];
    check("badinput-rules", cases);
}

/// A rules directory of many small alias bombs, each under the per-file node limit: the set
/// shares one budget (each file having its own used to allow 1,000 × a million nodes).
#[test]
fn hostile_rule_directory() {
    let dir = Scratch::new("badinput-dir");
    let rules = dir.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for i in 0..300 {
        std::fs::write(rules.join(format!("bomb{i:03}.yaml")), alias_bomb(5)).unwrap();
    }
    let r = run(
        &dir,
        &[
            "rules",
            "check",
            "--no-default-rules",
            rules.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("/bomb000.yaml:1:1: unknown field `a0`")
            && r.stderr.contains("nodes in the rule set (all files)"),
        "{}",
        r.stderr.chars().take(2000).collect::<String>()
    );
    eprintln!("rule-directory {:?} {} KiB", r.wall, r.max_rss_kb);
    assert!(r.wall < MAX_WALL, "{:?}", r.wall);
    assert!(r.max_rss_kb < MAX_RSS_KB, "{} KiB", r.max_rss_kb);
}

#[test]
fn hostile_configs_fail_before_anything_is_attached() {
    let http = |extra: &str| format!("sinks:\n  - http:\n      url: http://127.0.0.1:9/\n{extra}");
    let cases = vec![
        case(
            "cfg-deep-200k",
            format!("sinks: {}", "[".repeat(200_000)),
            RUN,
            2,
            r"^detector: error: {F}:1:\d+: (nested too deep: more than 32 levels|YAML syntax: recursion limit)",
        ),
        case(
            "cfg-retry-1ns",
            http("      retry: {initial: 1ns, max: 1ns}\n"),
            RUN,
            2,
            r"^detector: error: {F}:4:24: `1ns` is out of range: 10ms \.\.= 1h$",
        ),
        case(
            "cfg-timeout-0s",
            http("      timeout: 0s\n"),
            RUN,
            2,
            r"^detector: error: {F}:4:16: `0s` is out of range: 1s \.\.= 10m$",
        ),
        case(
            "cfg-url-empty-host",
            "sinks:\n  - http: {url: 'http://'}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:17: bad URL `http://`: empty host$",
        ),
        case(
            "cfg-url-ipv6",
            "sinks:\n  - http: {url: 'http://[::1'}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:17: bad URL `http://\[::1`: invalid IPv6 address$",
        ),
        case(
            "cfg-url-port",
            "sinks:\n  - http: {url: 'http://a:99999/'}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:17: bad URL `http://a:99999/`: invalid port number$",
        ),
        case(
            "cfg-shutdown",
            "run: {shutdown_timeout: 600000years}\n",
            RUN,
            2,
            r"^detector: error: {F}:1:25: `600000years` is out of range: 0s \.\.= 1h$",
        ),
        case(
            "cfg-spool-0",
            "sinks:\n  - file: {path: /tmp/x, spool: {dir: /tmp/d, max_bytes: 0}}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:\d+: 0 is out of range: 4096 \.\.= 1099511627776$",
        ),
        case(
            "cfg-max-files-0",
            "sinks:\n  - file: {path: /tmp/x, max_files: 0}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:\d+: 0 is out of range: 1 \.\.= 1000$",
        ),
        case(
            "cfg-syslog-colons",
            "sinks:\n  - syslog: {transport: udp, address: '::::'}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:39: bad address `::::`",
        ),
        case(
            "cfg-syslog-port",
            "sinks:\n  - syslog: {transport: tcp, address: 'h:99999'}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:39: bad address `h:99999`: the port must be 1 \.\.= 65535$",
        ),
        case(
            "cfg-token-missing",
            "sinks:\n  - http: {url: 'http://127.0.0.1:9/', token_file: /nonexistent/tok}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:\d+: sinks\[0\] \(http\): token_file /nonexistent/tok: No such file or directory \(os error 2\)$",
        ),
        case(
            "cfg-ca-missing",
            "sinks:\n  - http: {url: 'https://h/', tls: {ca_file: /nonexistent/ca.pem}}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:\d+: sinks\[0\] \(http\): tls.ca_file /nonexistent/ca.pem: No such file",
        ),
        // The config names itself as its CA file: readable, not PEM.
        case(
            "cfg-ca-garbage",
            "sinks:\n  - http: {url: 'https://h/', tls: {ca_file: '{F}'}}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:\d+: sinks\[0\] \(http\): tls.ca_file {F}: no PEM certificate$",
        ),
        case(
            "cfg-file-root",
            "sinks:\n  - file: {path: /}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:18: sinks\[0\] \(file\): /: names a directory, not a file$",
        ),
        case(
            "cfg-file-empty",
            "sinks:\n  - file: {path: ''}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:18: sinks\[0\] \(file\): `path` is empty$",
        ),
        case(
            "cfg-file-devnull",
            "sinks:\n  - file: {path: /dev/null/x}\n",
            RUN,
            2,
            r"^detector: error: {F}:2:18: sinks\[0\] \(file\): /dev/null/x: Not a directory \(os error 20\)$",
        ),
        case(
            "cfg-rules-missing",
            "run:\n  rules: [/nonexistent/rules.yaml]\n",
            RUN,
            2,
            r"^detector: error: {F}:2:11: run.rules\[0\]: /nonexistent/rules.yaml: No such file or directory \(os error 2\)$",
        ),
        case(
            "cfg-invalid-utf8",
            b"sinks:\n  - stdout: {name: \xc3\x28}\n".to_vec(),
            RUN,
            2,
            r"^detector: error: {F}:2:20: invalid UTF-8 \(bytes 0xc3 0x28 0x7d 0x0a\)$",
        ),
        case(
            "cfg-dup-sink-key",
            "sinks:\n  - stdout: {}\n    stdout: {}\n",
            RUN,
            2,
            r"^detector: error: {F}:3:5: duplicate key `stdout`",
        ),
        case(
            "cfg-unknown-key",
            "run:\n  statedir: /x\n",
            RUN,
            2,
            r"^detector: error: {F}:2:3: unknown field `statedir`",
        ),
        case(
            "cfg-too-large",
            format!("# {}\n", "x".repeat(2 << 20)),
            RUN,
            2,
            r"^detector: error: {F}:1:1: file larger than 1 MiB",
        ),
        case(
            "cfg-missing",
            "",
            &["run", "--config", "{D}/nonexistent.yaml"],
            2,
            r"^detector: error: {D}/nonexistent.yaml: No such file or directory \(os error 2\)$",
        ),
    ];
    check("badinput-config", cases);
}

fn connect_line(ts: u64, i: usize) -> String {
    serde_json::json!({
        "ts": ts, "kind": "connect",
        "process": {"pid": 7, "tgid": 7, "ppid": 1, "start": 1, "uid": 0, "gid": 0, "user": "root",
                    "comm": "scan", "exe": "/usr/bin/scan", "argv": ["scan"], "cgroup_id": 1},
        "net": {"protocol": "tcp", "family": 4, "direction": "outbound", "src_addr": "10.0.0.1",
                "src_port": 40000, "dst_addr": format!("10.9.{}.{}", i / 200, i % 200 + 1),
                "dst_port": 443, "outcome": "in_progress", "sock": i}
    })
    .to_string()
}

#[test]
fn hostile_recordings() {
    let dir = Scratch::new("badinput-replay");
    let rec = |name: &str, body: Vec<u8>| {
        let p = dir.path(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // Time at the end of u64: one fan-out alert however many connects (52 gave 2, 80 gave 30).
    for n in [52, 80] {
        let lines: Vec<String> = (0..n).map(|i| connect_line(u64::MAX, i)).collect();
        let p = rec(
            &format!("max-{n}.ndjson"),
            (lines.join("\n") + "\n").into_bytes(),
        );
        let r = run(&dir, &["replay", p.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let fan = r.stdout.matches("\"service-fan-out-burst\"").count();
        assert_eq!(fan, 1, "{n} connects at u64::MAX: {}", r.stdout);
        assert!(r.wall < MAX_WALL && r.max_rss_kb < MAX_RSS_KB);
    }
    // A 2 MB line without a line break between two good ones, and an invalid UTF-8 line:
    // skipped with their numbers, the rest read.
    let mut body = connect_line(1_000, 1).into_bytes();
    body.push(b'\n');
    body.extend(vec![b'x'; 2 << 20]);
    body.push(b'\n');
    body.extend(b"{\"ts\": \xff}\n");
    body.extend(connect_line(2_000, 2).into_bytes());
    let p = rec("long.ndjson", body);
    let ps = p.display().to_string();
    let r = run(&dir, &["replay", "--stats", &ps]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{ps}:2: skipped: line of 2097153 bytes, longer than 1 MiB"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("{ps}:3: skipped: ")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\"events\":2"), "{}", r.stderr);
    assert!(r.max_rss_kb < MAX_RSS_KB, "{} KiB", r.max_rss_kb);
}
