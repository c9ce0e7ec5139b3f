//! The server under load, as its own process (optionally pinned to a core with
//! `taskset`), and its memory: resident set now and at its peak, from /proc.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A running server process.
pub struct ServerProcess {
    child: Child,
    /// "127.0.0.1:PORT".
    pub addr: String,
    _data: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Runs `program args` with `env`, pinned to `cpu` when given, and waits for its
    /// "clientela listening on ADDR" line.
    /// This executable serving under its hidden `flag` (`--territory-server`...).
    pub fn spawn_self(
        flag: &str,
        env: &[(&str, String)],
        cpu: Option<usize>,
        data: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        Self::spawn(&std::env::current_exe()?, &[flag], env, cpu, data)
    }

    pub fn spawn(
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        cpu: Option<usize>,
        data: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let mut child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("clientela listening on ") else {
            bail!("the server did not start: {line:?}");
        };
        Ok(Self {
            addr: addr.to_owned(),
            child,
            _data: data,
        })
    }

    /// (current, peak) resident set size in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
