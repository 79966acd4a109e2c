//! Helpers for the end-to-end tests: the built service binaries as child processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A binary of this workspace, built next to the test executable (`make test` builds them
/// first with `cargo build --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A service process with its output captured in a file.
pub struct Service {
    pub name: &'static str,
    pub base: String,
    log: PathBuf,
    child: Child,
}

impl Service {
    pub fn spawn(
        name: &'static str,
        port: u16,
        env: &BTreeMap<String, String>,
        dir: &std::path::Path,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env)
            .env("HDS_HTTP__BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .expect("start service");
        Service {
            name,
            base: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health/ready` until it answers 200.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in 90 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 60 s of SIGTERM", self.name))
            .expect("wait");
        (status, self.log())
    }
}

/// Runs a binary to completion (it is expected to refuse to start): exit status and output.
pub async fn run_to_exit(name: &str, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .args(args)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} hung instead of refusing to start"))
    .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}
