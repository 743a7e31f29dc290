//! Heaps on a heap server, end to end through the `ferrite` binary: a real
//! `ferrite serve` over TLS (certificates made here), a process whose heap
//! is larger than its physical heap running on `ferrite://`, the server
//! killed with `kill -9` under it and started again (the process pauses and
//! ends with the uninterrupted result), `ps`, `inspect` and `rm` over
//! `ferrite://`, a wrong token refused in one clear line, a resume sent its
//! resident pages while it runs, a live move from behind a slow link, and
//! `resume --all` behind a private CA.

#![allow(clippy::unwrap_used)]

use ferrite_chaos::{LinkShape, TcpProxy};
use ferrite_ckpt::ProcessStore;
use ferrite_net::client::{ClientOptions, ServerStore};
use ferrite_pagestore::StorageBackend;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    thread::sleep,
    time::{Duration, Instant},
};

#[path = "support/mover.rs"]
mod mover;
use mover::{mover, wait_for_batches};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");
const TOKEN: &str = "the-token-of-t1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory of this test process for one test (tests run at once).
fn temp_dir(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("serve-{}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    fs::write(&paths.0, ca.pem()).unwrap();
    fs::write(&paths.1, leaf.pem()).unwrap();
    fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

struct Server {
    child: Child,
    args: Vec<String>,
    port: u16,
}

impl Server {
    fn start(args: Vec<String>, port: u16) -> Self {
        let child = Command::new(FERRITE)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let began = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "the server did not start"
            );
            sleep(Duration::from_millis(20));
        }
        Self { child, args, port }
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        *self = Self::start(self.args.clone(), self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ferrite(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(FERRITE)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn newest_epoch(store: &Arc<dyn StorageBackend>) -> u64 {
    ProcessStore::new(store.clone(), "job")
        .unwrap()
        .epochs()
        .unwrap()
        .last()
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_process_on_a_heap_server_outlives_kill_9_of_the_server() {
    let dir = temp_dir("kill-9");
    let (mut server, port, ca) = heap_server(&dir, true);
    let ca = ca.expect("a TLS server");
    let url = format!("ferrite://127.0.0.1:{port}/t1");
    let home = dir.join("home");
    let env = [("FERRITE_TOKEN", TOKEN), ("HOME", home.to_str().unwrap())];
    let churn = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/churn.wat");
    let churn = churn.to_str().unwrap();
    let (steps, mib) = ("200000", "24");
    let expected = ferrite(&["run", "--invoke", "churn", churn, steps, mib], &[]);
    assert!(expected.status.success(), "{}", text(&expected.stderr));

    let cache = dir.join("cache");
    let ca_arg = ca.to_str().unwrap();
    let child = Command::new(FERRITE)
        .args([
            "run",
            "--name",
            "job",
            "--store",
            &url,
            "--ca-cert",
            ca_arg,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--physical-heap",
            "16MiB",
            "--checkpoint-every",
            "300ms",
            "--lease",
            "2s",
            "--invoke",
            "churn",
            churn,
            steps,
            mib,
        ])
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let options = ClientOptions {
        token: TOKEN.into(),
        ca_cert: Some(ca.clone()),
        ..ClientOptions::default()
    };
    let store: Arc<dyn StorageBackend> = Arc::new(ServerStore::open(&url, &options).unwrap());
    let began = Instant::now();
    while newest_epoch(&store) < 2 {
        assert!(
            began.elapsed() < Duration::from_mins(1),
            "no checkpoint in a minute"
        );
        sleep(Duration::from_millis(50));
    }
    server.kill_9();
    sleep(Duration::from_millis(3500));
    server.restart();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout), text(&expected.stdout), "{stderr}");
    assert!(
        stderr.contains("does not answer"),
        "the pause is said: {stderr}"
    );

    let store_args = ["--store", &url, "--ca-cert", ca_arg];
    let ps = ferrite(&[&["ps"][..], &store_args].concat(), &env);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert!(
        text(&ps.stdout).contains("returned"),
        "{}",
        text(&ps.stdout)
    );
    let inspect = ferrite(&[&["inspect", "job"][..], &store_args].concat(), &env);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    assert!(
        text(&inspect.stdout).contains(&url),
        "{}",
        text(&inspect.stdout)
    );

    let wrong = [("FERRITE_TOKEN", "not-the-token"), env[1]];
    let refused = ferrite(&[&["ps"][..], &store_args].concat(), &wrong);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("wrong token"), "{message}");

    let rm = ferrite(&[&["rm", "job"][..], &store_args].concat(), &env);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(store.list("procs/job/").unwrap().is_empty());
}

/// A process resumed from a heap server runs at once while the server sends
/// it the pages that were resident at its checkpoint: `--stats` shows reads
/// answered from pushed pages, and the result is the uninterrupted one.
#[test]
fn a_resumed_process_is_sent_its_resident_pages_while_it_runs() {
    let dir = temp_dir("push");
    let (_server, port, _) = heap_server(&dir, false);
    let url = format!("ferrite+insecure://127.0.0.1:{port}/t1");
    let mover = mover().display().to_string();
    // 16 MiB of heap, paced at 16 MiB/s: about four seconds of work.
    let workload = [mover.as_str(), "16", "16", "16000"];
    let expected = uninterrupted(&dir, &workload);

    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mapping = format!("{}::/out", out.display());
    let env = [("FERRITE_TOKEN", TOKEN)];
    let store = |cache: &str| {
        [
            "--store".to_string(),
            url.clone(),
            "--cache-dir".to_string(),
            dir.join(cache).display().to_string(),
        ]
    };
    let first = store("cache-a");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let runner = Command::new(FERRITE)
        .args(["run", "--name", "job", "--dir", &mapping])
        .args(&first)
        .args(workload)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_batches(&out, 4);
    let stop = ferrite(
        &[&["checkpoint", "job", "--stop"][..], &first].concat(),
        &env,
    );
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let stopped = runner.wait_with_output().unwrap();
    assert_eq!(
        stopped.status.code(),
        Some(143),
        "{}",
        text(&stopped.stderr)
    );

    // Another machine: an empty cache of its own.
    let second = store("cache-b");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let resumed = ferrite(&[&["resume", "job", "--stats"][..], &second].concat(), &env);
    let stderr = text(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert_eq!(text(&resumed.stdout), expected, "{stderr}");
    let asked: u64 = number_before(&stderr, " asked of the store ahead");
    assert!(asked >= 2048, "most of the 16 MiB was resident: {stderr}");
    let pushed: u64 = number_before(&stderr, " from pushed pages");
    assert!(pushed > 0, "reads answered from pushed pages: {stderr}");
}

/// The number just before `marker` in `text`.
fn number_before(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text}"));
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

/// A loopback heap server for tenant t1 (token [`TOKEN`]), its data under
/// `dir`: over TLS with a CA made here (returned), or `--insecure`.
fn heap_server(dir: &Path, tls: bool) -> (Server, u16, Option<PathBuf>) {
    fs::create_dir_all(dir).unwrap();
    let tokens = dir.join("tokens");
    let digest = ferrite_net::tokens::digest_hex(TOKEN);
    fs::write(&tokens, format!("# tenants\nt1 {digest}\n")).unwrap();
    let port = free_port();
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data",
        dir.join("data").to_str().unwrap(),
        "--tokens",
        tokens.to_str().unwrap(),
        "--report-every",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let ca = if tls {
        let (ca, cert, key) = pki(dir);
        for (flag, path) in [("--tls-cert", cert), ("--tls-key", key)] {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        Some(ca)
    } else {
        args.push("--insecure".to_string());
        None
    };
    (Server::start(args, port), port, ca)
}

/// The output of `ferrite run` of the mover `workload`, its files under
/// `dir`.
fn uninterrupted(dir: &Path, workload: &[&str]) -> String {
    let out = dir.join("expected");
    fs::create_dir_all(&out).unwrap();
    let mapping = format!("{}::/out", out.display());
    let expected = ferrite(&[&["run", "--dir", &mapping][..], workload].concat(), &[]);
    assert!(expected.status.success(), "{}", text(&expected.stderr));
    let stdout = text(&expected.stdout);
    assert!(stdout.contains("log ok"), "{stdout}");
    stdout
}

/// A live move whose runner reaches the server over a slow link (a proxy
/// that delays every byte 10 ms each way and carries 4 MiB/s): the rounds
/// take longer, the move completes, and the taker ends with the
/// uninterrupted result, its log showing every batch once.
#[test]
fn a_process_moves_live_from_behind_a_slow_link() {
    let dir = temp_dir("slow");
    let (_server, port, _) = heap_server(&dir, false);
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    proxy.set_shape(LinkShape {
        delay_ms: 10,
        bytes_per_sec: Some(4 << 20),
    });
    let mover = mover().display().to_string();
    // 8 MiB of heap dirtied at 4 MiB/s, as fast as the link: the rounds do
    // not shrink much, and the last one is cut short.
    let workload = [mover.as_str(), "8", "4", "8192"];
    let expected = uninterrupted(&dir, &workload);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mapping = format!("{}::/out", out.display());
    let env = [("FERRITE_TOKEN", TOKEN)];
    let machine = |url: String, cache: &str| {
        vec![
            "--store".to_string(),
            url,
            "--cache-dir".to_string(),
            dir.join(cache).display().to_string(),
            "--lease".to_string(),
            "5s".to_string(),
        ]
    };
    let a = machine(format!("ferrite+insecure://{}/t1", proxy.addr()), "cache-a");
    let b = machine(format!("ferrite+insecure://127.0.0.1:{port}/t1"), "cache-b");
    let runner_a = Command::new(FERRITE)
        .args(["run", "--name", "job", "--dir", &mapping])
        .args(&a)
        .args(workload)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_batches(&out, 2);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let taker = ferrite(
        &[&["resume", "job", "--take-over", "--stats"][..], &b].concat(),
        &env,
    );
    let stderr = text(&taker.stderr);
    assert!(taker.status.success(), "{stderr}");
    assert_eq!(text(&taker.stdout), expected, "{stderr}");
    assert!(stderr.contains("taken over from"), "{stderr}");
    let a_out = runner_a.wait_with_output().unwrap();
    let a_err = text(&a_out.stderr);
    assert!(a_out.status.success(), "{a_err}");
    assert!(a_err.contains("job moved to"), "{a_err}");
    assert!(
        text(&a_out.stdout).is_empty(),
        "a printed no result: {a_err}"
    );
    // The old runner's pages went through the slow link.
    assert!(
        proxy.counts().bytes_to_server > 2 << 20,
        "{:?}",
        proxy.counts()
    );
}

/// `resume --all` over a heap server behind a private CA: each child resume
/// is given the CA, the cache and the token, and every stopped process ends.
#[test]
fn resume_all_reaches_a_heap_server_behind_a_private_ca() {
    let dir = temp_dir("all");
    let (_server, port, ca) = heap_server(&dir, true);
    let ca = ca.expect("a TLS server");
    let url = format!("ferrite://127.0.0.1:{port}/t1");
    let cache = dir.join("cache");
    let store = [
        "--store",
        &url,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let env = [("FERRITE_TOKEN", TOKEN)];
    let fib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fib.wat");
    let fib = fib.to_str().unwrap();
    for name in ["a", "b"] {
        let runner = Command::new(FERRITE)
            .args(["run", "--name", name])
            .args(store)
            .args(["--invoke", "fib_recursive", fib, "38"])
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let began = Instant::now();
        loop {
            let stop = ferrite(
                &[&["checkpoint", name, "--stop"][..], &store].concat(),
                &env,
            );
            if stop.status.success() {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "{}",
                text(&stop.stderr)
            );
            sleep(Duration::from_millis(50));
        }
        let stopped = runner.wait_with_output().unwrap();
        assert_eq!(
            stopped.status.code(),
            Some(143),
            "{}",
            text(&stopped.stderr)
        );
    }
    let all = ferrite(&[&["resume", "--all"][..], &store].concat(), &env);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let ps = ferrite(&[&["ps"][..], &store].concat(), &env);
    let listing = text(&ps.stdout);
    assert_eq!(listing.matches("returned").count(), 2, "{listing}");
}
