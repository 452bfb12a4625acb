//! The process the privileged tests drive: the agent never reports its own tgid, so every
//! action under test runs here, in a child of the test. Prints nothing on success; exits
//! non-zero with a message on failure.

use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd},
    time::Duration,
};

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in test paths")
}

fn check(rc: i64, what: &str) -> i64 {
    if rc < 0 {
        eprintln!("actor: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    rc
}

fn read_fd(fd: i32) {
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut s = Vec::new();
    let _ = f.read_to_end(&mut s);
}

fn uring_open_read(path: &str, then_read: bool) {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let p = cstr(path);
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), p.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build()
        .user_data(1);
    unsafe { ring.submission().push(&open).expect("sq full") };
    ring.submit_and_wait(1).expect("submit");
    let fd = ring.completion().next().expect("cqe").result();
    check(fd as i64, "io_uring openat");
    if then_read {
        let mut buf = vec![0u8; 4096];
        let rd = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(2);
        unsafe { ring.submission().push(&rd).expect("sq full") };
        ring.submit_and_wait(1).expect("submit");
        let n = ring.completion().next().expect("cqe").result();
        check(n as i64, "io_uring read");
    }
}

fn uring_read_fd(fd: i32) {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let mut buf = vec![0u8; 4096];
    let rd = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
        .offset(0)
        .build()
        .user_data(2);
    unsafe { ring.submission().push(&rd).expect("sq full") };
    ring.submit_and_wait(1).expect("submit");
    let n = ring.completion().next().expect("cqe").result();
    check(n as i64, "io_uring read");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("actor: missing argument {i}");
            std::process::exit(2)
        })
    };
    match a(0) {
        // openat(AT_FDCWD, path) through std.
        "open" => {
            let mut f = std::fs::File::open(a(1)).unwrap_or_else(|e| {
                eprintln!("actor: open {}: {e}", a(1));
                std::process::exit(1)
            });
            let mut s = Vec::new();
            let _ = f.read_to_end(&mut s);
        }
        // openat after the descriptor table has grown past the 64 slots embedded in
        // files_struct (the kernel programs then take another path to the file).
        "open-grown" => {
            check(unsafe { libc::dup2(2, 200) } as i64, "dup2");
            let p = cstr(a(1));
            let fd = check(
                unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) } as i64,
                "open",
            );
            read_fd(fd as i32);
        }
        // The legacy open(2) syscall.
        "open-syscall" => {
            let p = cstr(a(1));
            let fd = check(
                unsafe { libc::syscall(libc::SYS_open, p.as_ptr(), libc::O_RDONLY) },
                "open",
            );
            read_fd(fd as i32);
        }
        // openat(dirfd, relative name).
        "openat" => {
            let d = cstr(a(1));
            let dfd = check(
                unsafe { libc::open(d.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) } as i64,
                "open dir",
            );
            let n = cstr(a(2));
            let fd = check(
                unsafe { libc::openat(dfd as i32, n.as_ptr(), libc::O_RDONLY) } as i64,
                "openat",
            );
            read_fd(fd as i32);
        }
        // chdir, then a relative (possibly ..-laden) name.
        "chdir-open" => {
            std::env::set_current_dir(a(1)).expect("chdir");
            let mut f = std::fs::File::open(a(2)).expect("open relative");
            let mut s = Vec::new();
            let _ = f.read_to_end(&mut s);
        }
        "openat2" => {
            #[repr(C)]
            struct OpenHow {
                flags: u64,
                mode: u64,
                resolve: u64,
            }
            let how = OpenHow {
                flags: libc::O_RDONLY as u64,
                mode: 0,
                resolve: 0,
            };
            let p = cstr(a(1));
            let fd = check(
                unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        libc::AT_FDCWD,
                        p.as_ptr(),
                        &how as *const OpenHow,
                        std::mem::size_of::<OpenHow>(),
                    )
                },
                "openat2",
            );
            read_fd(fd as i32);
        }
        // O_PATH handle, then a real open through the /proc/self/fd magic link.
        "reopen-fd" => {
            let p = cstr(a(1));
            let fd = check(
                unsafe { libc::open(p.as_ptr(), libc::O_PATH) } as i64,
                "open O_PATH",
            );
            let magic = format!("/proc/self/fd/{fd}");
            let mut f = std::fs::File::open(&magic).expect("reopen");
            let mut s = Vec::new();
            let _ = f.read_to_end(&mut s);
        }
        "uring-open" => uring_open_read(a(1), true),
        // Open normally, wait past the agent's read-dedup window, then read through io_uring.
        "uring-read" => {
            let f = std::fs::File::open(a(1)).expect("open");
            std::thread::sleep(Duration::from_millis(a(2).parse().expect("ms")));
            uring_read_fd(f.as_raw_fd());
        }
        // Open, wait, then read with plain read(2) after the page cache was dropped.
        "late-read" => {
            let mut f = std::fs::File::open(a(1)).expect("open");
            std::thread::sleep(Duration::from_millis(a(2).parse().expect("ms")));
            let mut s = Vec::new();
            let _ = f.read_to_end(&mut s);
        }
        "environ" => {
            let _ = std::fs::read(format!("/proc/{}/environ", a(1))).expect("read environ");
        }
        "self-environ" => {
            let _ = std::fs::read("/proc/self/environ").expect("read environ");
        }
        // Benign open storm: N open+close of one unwatched file.
        "storm" => {
            let p = cstr(a(1));
            let n: u64 = a(2).parse().expect("count");
            for _ in 0..n {
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
            }
        }
        // Many opens of a watched file (ring-buffer overflow test).
        "flood" => {
            let p = cstr(a(1));
            let n: u64 = a(2).parse().expect("count");
            for _ in 0..n {
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
            }
        }
        // N opens of a watched file at RATE per second (steady writes for the ledger).
        "paced" => {
            let p = cstr(a(1));
            let n: u64 = a(2).parse().expect("count");
            let rate: u64 = a(3).parse().expect("rate");
            let t0 = std::time::Instant::now();
            for i in 0..n {
                let due = t0 + Duration::from_micros(i * 1_000_000 / rate.max(1));
                if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(d);
                }
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
            }
        }
        "connect" => {
            let addr = format!("{}:{}", a(1), a(2));
            let addr: std::net::SocketAddr = addr.parse().expect("addr");
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(mut s) => {
                    let _ = s.write_all(b"x");
                    println!("{}", s.local_addr().map(|a| a.port()).unwrap_or(0));
                }
                Err(e) => println!("error {e}"),
            }
        }
        "udp-connect" => {
            let addr: std::net::SocketAddr = format!("{}:{}", a(1), a(2)).parse().expect("addr");
            let bind = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = UdpSocket::bind(bind).expect("bind");
            s.connect(addr).expect("udp connect");
        }
        // connect() a UDP socket and send one datagram: a contact.
        "udp-connect-send" => {
            let addr: std::net::SocketAddr = format!("{}:{}", a(1), a(2)).parse().expect("addr");
            let bind = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = UdpSocket::bind(bind).expect("bind");
            s.connect(addr).expect("udp connect");
            s.send(b"x").expect("udp send");
        }
        // Unconnected sends: COUNT datagrams to each ADDR:PORT that follows.
        "udp-sendto" => {
            let n: u32 = a(1).parse().expect("count");
            let v4 = UdpSocket::bind("0.0.0.0:0").expect("bind");
            let v6 = UdpSocket::bind("[::]:0").expect("bind");
            for dst in &args[2..] {
                let dst: std::net::SocketAddr = dst.parse().expect("destination");
                let s = if dst.is_ipv6() { &v6 } else { &v4 };
                for _ in 0..n {
                    s.send_to(b"x", dst).expect("send_to");
                }
            }
        }
        // Opens PATH to rewrite it (O_WRONLY|O_TRUNC), as a token refresher does.
        "write" => {
            std::fs::write(a(1), b"rotated").unwrap_or_else(|e| {
                eprintln!("actor: write {}: {e}", a(1));
                std::process::exit(1)
            });
        }
        // A DNS server for one query: binds ADDR:53, prints "ready", answers the first query
        // for NAME with the addresses that follow (A and AAAA records), then exits.
        "dns-serve" => dns_serve(a(1), a(2), &args[3..]),
        // Resolves NAME with one query to SERVER:53, then connects (TCP, PORT) to each address
        // of the answer in turn until one accepts; prints the addresses tried.
        "dns-connect" => dns_connect(a(1), a(2), a(3)),
        // Listen on addr:port, print "ready", accept one connection, print the peer port.
        "listen" => {
            let l = TcpListener::bind(format!("{}:{}", a(1), a(2))).expect("bind");
            println!("ready {}", l.local_addr().map(|a| a.port()).unwrap_or(0));
            let _ = std::io::stdout().flush();
            let (mut s, peer) = l.accept().expect("accept");
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            println!("{}", peer.port());
        }
        // fork; the child execs argv[1..]; the parent waits and prints the child pid.
        "spawn" => {
            let prog = cstr(a(1));
            let argv: Vec<CString> = args[1..].iter().map(|s| cstr(s)).collect();
            let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe { libc::execv(prog.as_ptr(), ptrs.as_ptr()) };
                unsafe { libc::_exit(127) };
            }
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            println!("{pid}");
        }
        // Credential read, then connects to N hosts on PORT as fast as possible: PREFIX.2,
        // PREFIX.3, … (a test network's hosts; loopback 127.0.0.x when PREFIX is not given).
        "fanout" => {
            let _ = std::fs::read(a(1)).expect("read credential");
            let n: u8 = a(2).parse().expect("hosts");
            let prefix = args.get(4).map(String::as_str).unwrap_or("127.0.0");
            for h in 0..n {
                let addr: std::net::SocketAddr = format!("{prefix}.{}:{}", h + 2, a(3))
                    .parse()
                    .expect("addr");
                let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            }
        }
        "exit" => std::process::exit(a(1).parse().expect("code")),
        "sleep" => std::thread::sleep(Duration::from_millis(a(1).parse().expect("ms"))),
        other => {
            eprintln!("actor: unknown command {other}");
            std::process::exit(2);
        }
    }
}

fn dns_serve(addr: &str, name: &str, ips: &[String]) {
    use simple_dns::{rdata, Name, Packet, ResourceRecord, CLASS};
    let s = UdpSocket::bind(format!("{addr}:53")).expect("bind :53");
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 1500];
    let (n, peer) = s.recv_from(&mut buf).expect("query");
    let q = Packet::parse(&buf[..n]).expect("a DNS query");
    let mut r = Packet::new_reply(q.id());
    for question in &q.questions {
        r.questions.push(question.clone());
    }
    for ip in ips {
        let rd = match ip.parse::<std::net::IpAddr>().expect("answer address") {
            std::net::IpAddr::V4(v4) => simple_dns::rdata::RData::A(rdata::A {
                address: u32::from(v4),
            }),
            std::net::IpAddr::V6(v6) => simple_dns::rdata::RData::AAAA(rdata::AAAA {
                address: u128::from(v6),
            }),
        };
        r.answers.push(ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            60,
            rd,
        ));
    }
    let bytes = r.build_bytes_vec().expect("answer");
    s.send_to(&bytes, peer).expect("answer sent");
}

fn dns_connect(server: &str, name: &str, port: &str) {
    use simple_dns::{Name, Packet, Question, CLASS, QCLASS, QTYPE, TYPE};
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.connect(format!("{server}:53"))
        .expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut q = Packet::new_query(0x4242);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    s.send(&q.build_bytes_vec().expect("query"))
        .expect("query sent");
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).expect("answer");
    let answer = Packet::parse(&buf[..n]).expect("a DNS answer");
    for rr in &answer.answers {
        let ip = match &rr.rdata {
            simple_dns::rdata::RData::A(a) => {
                std::net::IpAddr::from(std::net::Ipv4Addr::from(a.address))
            }
            simple_dns::rdata::RData::AAAA(a) => {
                std::net::IpAddr::from(std::net::Ipv6Addr::from(a.address))
            }
            _ => continue,
        };
        let addr = std::net::SocketAddr::new(ip, port.parse().expect("port"));
        println!("{ip}");
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            break;
        }
    }
}
