//! `convnet train --backup DIR` survives being killed, and Ctrl-C or SIGTERM stop it
//! cleanly: a run killed with SIGKILL again and again and started again each time with
//! the same command ends with the same model, bit for bit, as a run never stopped.

use convnet::model::Model;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-interrupt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `convnet train` on the built-in sample: 8 epochs of 24 steps, with the thread count
/// fixed (the sums' order, and so the bits, depend on it).
fn train(dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_convnet"));
    command
        .args([
            "train",
            "--data",
            "fashion-mnist-sample",
            "--epochs",
            "8",
            "--verbose",
            "0",
        ])
        .arg("--output")
        .arg(dir.join("model.keras"))
        .args(extra)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn weight_bits(path: &Path) -> Vec<Vec<u32>> {
    Model::load(path)
        .unwrap()
        .get_weights()
        .iter()
        .map(|w| w.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// Waits for `child` for at most `limit`; its status, or None if it still runs.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits until `path` exists with other bytes than `before`; false if `child` ended
/// first.
fn wait_for_change(child: &mut Child, path: &Path, before: Option<&[u8]>) -> bool {
    loop {
        if let Ok(now) = std::fs::read(path) {
            if Some(now.as_slice()) != before {
                return true;
            }
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, signal: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

fn stdout_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The model a run that is never stopped ends with.
fn uninterrupted(dir: &Path) -> Vec<Vec<u32>> {
    let out = train(dir, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    weight_bits(&dir.join("model.keras"))
}

#[test]
fn a_run_killed_five_times_ends_bit_for_bit_as_one_never_killed() {
    let reference = uninterrupted(&scratch("reference"));
    let dir = scratch("killed");
    let backup_dir = dir.join("backup");
    let backup = backup_dir.join("backup.keras");
    let csv = dir.join("log.csv");
    let args = [
        "--backup",
        backup_dir.to_str().unwrap(),
        "--backup-every",
        "5",
        "--csv",
        csv.to_str().unwrap(),
    ];
    let mut kills = 0;
    let mut last: Option<Vec<u8>> = None;
    while kills < 5 {
        let mut child = train(&dir, &args).spawn().unwrap();
        // Once the backup moved on, kill it some milliseconds later: mid-step,
        // mid-save or between.
        assert!(
            wait_for_change(&mut child, &backup, last.as_deref()),
            "the run ended before the kill {}: {}",
            kills + 1,
            stdout_of(child)
        );
        std::thread::sleep(Duration::from_millis(7 * kills as u64 + 3));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        last = std::fs::read(&backup).ok();
    }
    let out = train(&dir, &args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Resuming from the backup"), "{stdout}");
    assert!(!backup.exists(), "a finished run deletes its backup");
    let left: Vec<_> = std::fs::read_dir(&backup_dir).unwrap().collect();
    assert!(left.is_empty(), "half-written saves left behind: {left:?}");
    // The log has each epoch once, in order, across the six runs.
    let log = std::fs::read_to_string(&csv).unwrap();
    let epochs: Vec<&str> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["0", "1", "2", "3", "4", "5", "6", "7"], "{log}");
    assert_eq!(
        weight_bits(&dir.join("model.keras")),
        reference,
        "the resumed run's model differs from the uninterrupted run's"
    );
    for dir in [dir, scratch("reference")] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn ctrl_c_saves_the_backup_and_exits_130_and_the_same_command_resumes() {
    let reference = uninterrupted(&scratch("reference-int"));
    let dir = scratch("sigint");
    let backup_dir = dir.join("backup");
    let backup = backup_dir.join("backup.keras");
    let args = ["--backup", backup_dir.to_str().unwrap()];
    let mut child = train(&dir, &args).spawn().unwrap();
    assert!(
        wait_for_change(&mut child, &backup, None),
        "the run ended first"
    );
    let after_epoch = std::fs::read(&backup).unwrap();
    signal(&child, libc::SIGINT);
    let status = wait_for(&mut child, Duration::from_secs(30)).expect("no exit after Ctrl-C");
    assert_eq!(status.code(), Some(130));
    let stdout = stdout_of(child);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Interrupted"))
        .unwrap_or("");
    assert!(
        line.contains("in epoch") && line.contains(backup.to_str().unwrap()),
        "{stdout}"
    );
    assert_ne!(
        std::fs::read(&backup).unwrap(),
        after_epoch,
        "Ctrl-C saves where it stopped"
    );
    let out = train(&dir, &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(weight_bits(&dir.join("model.keras")), reference);
    for dir in [dir, scratch("reference-int")] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A run without a backup, once its first epoch ended (the CSV log's first line is
/// written then).
fn started_run(dir: &Path) -> Child {
    let csv = dir.join("log.csv");
    let mut child = train(dir, &["--csv", csv.to_str().unwrap()])
        .spawn()
        .unwrap();
    assert!(
        wait_for_change(&mut child, &csv, None),
        "the run ended first"
    );
    child
}

#[test]
fn sigterm_without_a_backup_saves_the_model_and_exits_143() {
    let dir = scratch("sigterm");
    let mut child = started_run(&dir);
    signal(&child, libc::SIGTERM);
    let status = wait_for(&mut child, Duration::from_secs(30)).expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(143));
    let stdout = stdout_of(child);
    assert!(
        stdout.contains("saved the model as trained so far"),
        "{stdout}"
    );
    Model::load(dir.join("model.keras")).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = scratch("twice");
    let mut child = started_run(&dir);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let status = wait_for(&mut child, Duration::from_secs(30)).expect("no exit after Ctrl-C");
    assert_eq!(status.code(), Some(130));
    std::fs::remove_dir_all(dir).unwrap();
}
