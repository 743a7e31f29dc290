//! Processes moving between machines over a heap server, with real hosts:
//! network namespaces joined by veth links to a bridge, built by
//! `scripts/netns/up.sh` (root; these tests fail, never skip, without it).
//! The server runs in namespace `server` (10.77.0.10), runners in `a`, `b`
//! and `c`, each with a local cache of its own, all over TLS.
//!
//! - A process with a heap larger than its physical heap runs on `a` and
//!   moves live to `b` (`ferrite resume NAME --take-over`), which reports the
//!   downtime; the result is the uninterrupted run's.
//! - A runner cut off from the server (its link taken down) pauses before its
//!   lease can expire; `b` takes the process over only after the lease ran
//!   out; when the link comes back, the old runner is fenced and stops.
//! - The server killed with `kill -9` during a hand-over and started again:
//!   a pause, then the move completes.
//! - A take-over while a checkpoint asked for through the store is under way.
//! - Another tenant's token, and a wrong token, are refused in one line.
//!
//! Every run is of `tests/wasi/mover.wasm`, whose file log shows a fork (two
//! runners at once) in its last line; each test compares that line with an
//! uninterrupted run's.

#![allow(clippy::unwrap_used)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

#[path = "support/mover.rs"]
mod mover;
use mover::{mover, wait_for_batches};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");
const TOKEN: &str = "token-of-tenant-one";
const OTHER_TOKEN: &str = "token-of-tenant-two";
const SERVER_IP: &str = "10.77.0.10";
const PORT: u16 = 7421;

/// The mover's heap (MiB), twice the physical heap of the runs, its pace
/// (MiB/s) and its length (4 KiB pages written): about 12 s when paced.
const MOVER_MIB: &str = "48";
const PHYSICAL: &str = "24MiB";
const MOVER_RATE: &str = "16";
const MOVER_STEPS: &str = "50000";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("netns-tests")
        .join(format!(
            "{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The output of an uninterrupted run.
fn expected() -> String {
    let out_dir = temp_dir("expected");
    let out = Command::new(FERRITE)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/out", out_dir.display()))
        .args([mover().to_str().unwrap(), MOVER_MIB, "0", MOVER_STEPS])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("log ok"), "{stdout}");
    stdout
}

/// A network of machines: namespaces PREFIX-server, PREFIX-a, ... removed
/// when dropped.
struct Network {
    prefix: String,
}

impl Network {
    fn up(label: &str) -> Self {
        // Interface names are short; namespace names need only be unique.
        let prefix = format!("fe{}{label}", std::process::id() % 100_000);
        let status = Command::new(root().join("scripts/netns/up.sh"))
            .args([&prefix, "server", "a", "b", "c"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "scripts/netns/up.sh failed: these tests need root and `ip netns`"
        );
        Self { prefix }
    }

    fn exec(&self, machine: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &format!("{}-{machine}", self.prefix)]);
        command
    }

    fn link(&self, machine: &str, state: &str) {
        let status = Command::new(root().join("scripts/netns/link.sh"))
            .args([&self.prefix, machine, state])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/netns/down.sh"))
            .arg(&self.prefix)
            .status();
    }
}

/// A heap server in namespace `server`, over TLS, with tenants t1 and t2.
struct Server<'n> {
    network: &'n Network,
    dir: PathBuf,
    ca: PathBuf,
    child: Option<Child>,
    /// Times started: the log has as many "listening" lines once it runs.
    starts: usize,
}

impl<'n> Server<'n> {
    fn start(network: &'n Network) -> Self {
        let dir = temp_dir("server");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![SERVER_IP.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
        fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        fs::write(
            dir.join("tokens"),
            format!(
                "t1 {}\nt2 {}\n",
                ferrite_net::tokens::digest_hex(TOKEN),
                ferrite_net::tokens::digest_hex(OTHER_TOKEN)
            ),
        )
        .unwrap();
        let mut server = Self {
            network,
            ca: dir.join("ca.pem"),
            dir,
            child: None,
            starts: 0,
        };
        server.restart();
        server
    }

    fn restart(&mut self) {
        let dir = &self.dir;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let child = self
            .network
            .exec("server")
            .arg(FERRITE)
            .args(["serve", "--listen", &format!("{SERVER_IP}:{PORT}")])
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--tokens")
            .arg(dir.join("tokens"))
            .arg("--tls-cert")
            .arg(dir.join("server.pem"))
            .arg("--tls-key")
            .arg(dir.join("server.key"))
            .args(["--report-every", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        let began = Instant::now();
        while fs::read_to_string(dir.join("server.log"))
            .unwrap_or_default()
            .matches("listening on")
            .count()
            < self.starts
        {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the server did not start"
            );
            sleep(Duration::from_millis(20));
        }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url() -> String {
        format!("ferrite://{SERVER_IP}:{PORT}/t1")
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A runner machine: its namespace, its cache, and files for its output.
struct Machine<'n> {
    network: &'n Network,
    name: &'static str,
    cache: PathBuf,
    url: String,
    ca: PathBuf,
}

/// A ferrite command running on a machine, its output in files.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait(mut self) -> (ExitStatus, String, String) {
        let began = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() > Duration::from_mins(4) {
                let _ = self.child.kill();
                panic!("a runner did not end in 4 minutes: {}", self.stderr());
            }
            sleep(Duration::from_millis(20));
        };
        let stdout = fs::read_to_string(&self.stdout).unwrap_or_default();
        (status, stdout, self.stderr())
    }

    /// Waits until the command's stderr contains `text`.
    fn wait_for_stderr(&self, text: &str) {
        self.wait_for_stderr_any(&[text]);
    }

    /// Waits until the command's stderr contains one of `texts`.
    fn wait_for_stderr_any(&self, texts: &[&str]) {
        let began = Instant::now();
        while !texts.iter().any(|text| self.stderr().contains(text)) {
            assert!(
                began.elapsed() < Duration::from_mins(2),
                "none of {texts:?} in: {}",
                self.stderr()
            );
            sleep(Duration::from_millis(10));
        }
    }
}

impl<'n> Machine<'n> {
    fn new(network: &'n Network, server: &Server, name: &'static str) -> Self {
        Self {
            network,
            name,
            cache: temp_dir(name),
            url: Server::url(),
            ca: server.ca.clone(),
        }
    }

    fn command(&self, args: &[&str], token: &str) -> Command {
        let mut command = self.network.exec(self.name);
        command
            .arg(FERRITE)
            .args(args)
            .arg("--store")
            .arg(&self.url)
            .arg("--ca-cert")
            .arg(&self.ca)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--lease", "3s"])
            .env("FERRITE_TOKEN", token);
        command
    }

    fn spawn(&self, args: &[&str], extra: &[String]) -> Running {
        let dir = temp_dir(self.name);
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let child = self
            .command(args, TOKEN)
            .args(extra)
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn run_mover(&self, out: &Path) -> Running {
        self.spawn(
            &["run", "--name", "job", "--physical-heap", PHYSICAL],
            &[
                "--dir".into(),
                format!("{}::/out", out.display()),
                mover().to_str().unwrap().into(),
                MOVER_MIB.into(),
                MOVER_RATE.into(),
                MOVER_STEPS.into(),
            ],
        )
    }
}

#[test]
fn a_process_larger_than_its_physical_heap_moves_live_between_machines() {
    let expected = expected();
    let network = Network::up("live");
    let server = Server::start(&network);
    let (a, b) = (
        Machine::new(&network, &server, "a"),
        Machine::new(&network, &server, "b"),
    );
    let out = temp_dir("out");
    let runner = a.run_mover(&out);
    wait_for_batches(&out, 8);
    let taker = b.spawn(&["resume", "job", "--take-over", "--stats"], &[]);
    let (a_status, a_stdout, a_err) = runner.wait();
    let (b_status, b_stdout, b_err) = taker.wait();
    assert!(a_status.success(), "A: {a_err}");
    assert!(a_err.contains("job moved to"), "A: {a_err}");
    assert!(a_stdout.is_empty(), "A must not finish the program");
    assert!(b_status.success(), "B: {b_err}");
    assert!(b_err.contains("taken over from"), "B: {b_err}");
    assert!(b_err.contains("take-over     downtime"), "B: {b_err}");
    assert_eq!(b_stdout, expected, "B: {b_err}");
}

#[test]
fn a_runner_cut_off_stops_before_another_starts_and_is_fenced_when_back() {
    let expected = expected();
    let network = Network::up("cut");
    let server = Server::start(&network);
    let (a, b) = (
        Machine::new(&network, &server, "a"),
        Machine::new(&network, &server, "b"),
    );
    let out = temp_dir("out");
    let runner = a.run_mover(&out);
    wait_for_batches(&out, 8);
    network.link("a", "down");
    let cut_at = Instant::now();
    // B sees a lease that is no longer renewed: it waits for it to run out.
    let resumer = b.spawn(&["resume", "job"], &[]);
    resumer.wait_for_stderr("waiting for the lease of job to run out");
    // A paused on its own before B could start: at a host call (its lease
    // lapsed) or in a page fault (the server does not answer).
    runner.wait_for_stderr_any(&["paused", "does not answer"]);
    let batches_when_paused = fs::read_to_string(out.join("log.txt"))
        .unwrap()
        .lines()
        .count();
    let (b_status, b_stdout, b_err) = resumer.wait();
    assert!(
        cut_at.elapsed() >= Duration::from_secs(3),
        "B started before the lease could run out"
    );
    assert!(b_status.success(), "B: {b_err}");
    assert_eq!(b_stdout, expected, "B: {b_err}");
    assert!(batches_when_paused < 50);
    // A comes back: it finds the lease taken and stops without acting.
    network.link("a", "up");
    let (a_status, a_stdout, a_err) = runner.wait();
    assert!(!a_status.success(), "A: {a_err}");
    assert!(a_stdout.is_empty(), "A: {a_stdout}");
    assert!(a_err.contains("taken over"), "A: {a_err}");
    // The log B ended with is intact: A wrote nothing after it paused.
    let log = fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(log.lines().count(), 49, "{log}");
}

#[test]
fn the_server_killed_during_a_hand_over_costs_only_a_pause() {
    let expected = expected();
    let network = Network::up("kill");
    let mut server = Server::start(&network);
    let (a, b) = (
        Machine::new(&network, &server, "a"),
        Machine::new(&network, &server, "b"),
    );
    let out = temp_dir("out");
    let runner = a.run_mover(&out);
    wait_for_batches(&out, 8);
    let taker = b.spawn(&["resume", "job", "--take-over"], &[]);
    runner.wait_for_stderr("is moving to");
    server.kill_9();
    sleep(Duration::from_secs(1));
    server.restart();
    let (a_status, _, a_err) = runner.wait();
    let (b_status, b_stdout, b_err) = taker.wait();
    assert!(a_status.success(), "A: {a_err}");
    assert!(b_status.success(), "B: {b_err}");
    assert_eq!(b_stdout, expected, "A: {a_err}\nB: {b_err}");
}

#[test]
fn a_take_over_during_a_checkpoint_and_a_second_taker() {
    let expected = expected();
    let network = Network::up("busy");
    let server = Server::start(&network);
    let (a, b, c) = (
        Machine::new(&network, &server, "a"),
        Machine::new(&network, &server, "b"),
        Machine::new(&network, &server, "c"),
    );
    let out = temp_dir("out");
    let runner = a.run_mover(&out);
    wait_for_batches(&out, 8);
    let checkpoint = c.spawn(&["checkpoint", "job"], &[]);
    let taker = b.spawn(&["resume", "job", "--take-over"], &[]);
    let second = c.spawn(&["resume", "job", "--take-over"], &[]);
    let (c_status, _, c_err) = checkpoint.wait();
    assert!(c_status.success(), "checkpoint: {c_err}");
    let (second_status, second_stdout, second_err) = second.wait();
    let (b_status, b_stdout, b_err) = taker.wait();
    let (a_status, _, a_err) = runner.wait();
    assert!(a_status.success(), "A: {a_err}");
    // One taker won: B, or C if its request came first (then B, which asked
    // a later generation or none, is refused or finds it running).
    let (won, lost) = if b_status.success() {
        ((b_stdout, b_err), second_err)
    } else {
        assert!(second_status.success(), "B: {b_err}\nC: {second_err}");
        ((second_stdout, second_err), b_err)
    };
    assert_eq!(won.0, expected, "{}", won.1);
    assert!(
        lost.contains("another take-over") || lost.contains("already running"),
        "{lost}"
    );
}

#[test]
fn another_tenants_token_and_a_wrong_token_are_refused() {
    let network = Network::up("auth");
    let server = Server::start(&network);
    let a = Machine::new(&network, &server, "a");
    for token in [OTHER_TOKEN, "not-a-token"] {
        let out = a.command(&["ps"], token).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("refused"), "{stderr}");
    }
    let out = a.command(&["ps"], TOKEN).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
