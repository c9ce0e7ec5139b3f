//! The `clientela` binary as a child process: started with an environment, its address
//! read from the line it prints, killed when the test is done with it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Process {
    pub child: Child,
    pub addr: String,
}

impl Process {
    /// Runs `clientela <args>` with exactly `env` (the parent's environment cleared).
    pub fn spawn(args: &[&str], env: &[(String, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clientela"))
            .args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("clientela listening on ")
            .expect(&line)
            .to_owned();
        Self { child, addr }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        assert!(
            Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
