//! A save that fails part way (the disk full, the folder read-only) leaves the previous
//! checkpoint as it was, leaves no temporary file behind, and says which path could not
//! be written and what the operating system said.
//!
//! The failures are real ones, made in a child process (the test runs itself again):
//! a file-size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so that `write` fails with
//! `EFBIG` as on a full disk), and a folder without write permission, which the child
//! enters as an unprivileged user when the tests run as root (root writes anywhere).

use convnet::layers::{BatchNormalization, Conv2D, Dense, Flatten};
use convnet::model::{Input, Model};
use convnet::{Padding, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child: what to do, and where.
const CHILD_MODE: &str = "CONVNET_DISK_FULL_MODE";
const CHILD_PATH: &str = "CONVNET_DISK_FULL_PATH";
const CHILD_LIMIT: &str = "CONVNET_DISK_FULL_LIMIT";
/// The child's report: one line starting with this, then the save's outcome.
const REPORT: &str = "SAVE-OUTCOME:";
/// `nobody`, whom the child becomes when it runs as root.
const NOBODY: libc::uid_t = 65534;

/// A small CNN whose weights depend on `seed` (about 150 KB saved).
fn model(seed: u64) -> Model {
    let mut model = convnet::sequential![
        Input::new([12, 12, 3]),
        Conv2D::new(16, (3, 3)).padding(Padding::Same),
        BatchNormalization::new(),
        Flatten::new(),
        Dense::new(16)
    ]
    .unwrap();
    model.initialize_weights(seed).unwrap();
    model
}

fn input() -> Tensor {
    let n = 2 * 12 * 12 * 3;
    Tensor::new(
        vec![2, 12, 12, 3],
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect(),
    )
    .unwrap()
}

fn predictions(model: &Model) -> Vec<u32> {
    let y = model.predict(&[input()], 2).unwrap().remove(0);
    y.data().iter().map(|v| v.to_bits()).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs this test binary's test `test` as a child in `mode`, saving `model(2)` (and its
/// weights) to `path`; returns the child's report lines: one per save, `Ok` or the
/// error's message.
fn run_child(test: &str, mode: &str, path: &Path, limit: u64) -> Vec<String> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .env(CHILD_PATH, path)
        .env(CHILD_LIMIT, limit.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        // The harness prints "test NAME ... " before the first line of output.
        .filter_map(|l| l.split_once(REPORT))
        .map(|(_, l)| l.trim().to_string())
        .collect()
}

/// The child: makes writes fail as `mode` says, then saves a different model over the
/// checkpoint and its weights beside it, and reports each outcome.
fn child(mode: &str) {
    let path = PathBuf::from(std::env::var_os(CHILD_PATH).unwrap());
    let limit: u64 = std::env::var(CHILD_LIMIT).unwrap().parse().unwrap();
    let model = model(2);
    match mode {
        "fsize" => unsafe {
            // Past the limit, write() fails with EFBIG instead of the signal killing us.
            assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
            let rlimit = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
        },
        "readonly" => {
            if unsafe { libc::geteuid() } == 0 {
                // Root writes into any folder: become nobody, whom the mode stops.
                let dropped = unsafe {
                    libc::setgroups(0, std::ptr::null()) == 0
                        && libc::setgid(NOBODY) == 0
                        && libc::setuid(NOBODY) == 0
                };
                if !dropped {
                    println!(
                        "{REPORT} cannot drop root: {}",
                        std::io::Error::last_os_error()
                    );
                    return;
                }
            }
            let probe = path.with_file_name("probe");
            if std::fs::write(&probe, b"x").is_ok() {
                std::fs::remove_file(&probe).ok();
                println!("{REPORT} the folder is writable");
                return;
            }
        }
        other => panic!("unknown child mode {other}"),
    }
    let weights = path.with_file_name("checkpoint.weights.h5");
    for outcome in [model.save(&path), model.save_weights(&weights)] {
        match outcome {
            Ok(()) => println!("{REPORT} Ok"),
            Err(e) => println!("{REPORT} {}", e.to_string().replace('\n', " ")),
        }
    }
}

/// Saves `model(1)` and its weights to `dir`, and checks that `model(2)` predicts
/// differently (so that a replaced checkpoint would show).
fn first_checkpoint(dir: &Path) -> (PathBuf, PathBuf, Vec<u32>) {
    let (path, weights) = (
        dir.join("checkpoint.keras"),
        dir.join("checkpoint.weights.h5"),
    );
    let old = model(1);
    old.save(&path).unwrap();
    old.save_weights(&weights).unwrap();
    let before = predictions(&old);
    assert_ne!(
        before,
        predictions(&model(2)),
        "the two models predict alike"
    );
    (path, weights, before)
}

/// The checkpoint and the weights file are the first model's, and nothing else is in
/// `dir` (no temporary file).
fn assert_intact(dir: &Path, path: &Path, weights: &Path, before: &[u32]) {
    assert_eq!(
        listing(dir),
        ["checkpoint.keras", "checkpoint.weights.h5"],
        "a temporary file was left behind"
    );
    let loaded = Model::load(path).unwrap();
    assert_eq!(predictions(&loaded), before, "the checkpoint changed");
    let mut fresh = model(3);
    fresh.load_weights(weights).unwrap();
    assert_eq!(predictions(&fresh), before, "the weights file changed");
}

/// Each failed save's message names its file and carries the operating system's words
/// for `errno`.
fn assert_reports(outcomes: &[String], files: [&Path; 2], errno: i32) {
    let os = std::io::Error::from_raw_os_error(errno).to_string();
    assert_eq!(outcomes.len(), 2, "the child reported {outcomes:?}");
    for (message, file) in outcomes.iter().zip(files) {
        assert!(message != "Ok", "saving {} succeeded", file.display());
        let name = file.display().to_string();
        assert!(message.contains(&name), "{message:?} should name {name:?}");
        assert!(message.contains(&os), "{message:?} should say {os:?}");
    }
}

#[test]
fn a_full_disk_leaves_the_last_checkpoint() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        return child(&mode);
    }
    let dir = scratch("disk-full");
    let (path, weights, before) = first_checkpoint(&dir);
    let size = std::fs::metadata(&path).unwrap().len();
    // Every write stops half way through the file, after some of it is on disk.
    let outcomes = run_child(
        "a_full_disk_leaves_the_last_checkpoint",
        "fsize",
        &path,
        size / 2,
    );
    assert_reports(&outcomes, [&path, &weights], libc::EFBIG);
    assert_intact(&dir, &path, &weights, &before);
    // With room, the same child replaces both: the failures above were the limit's.
    let outcomes = run_child(
        "a_full_disk_leaves_the_last_checkpoint",
        "fsize",
        &path,
        size * 4,
    );
    assert_eq!(outcomes, ["Ok", "Ok"]);
    assert_eq!(
        predictions(&Model::load(&path).unwrap()),
        predictions(&model(2))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_read_only_folder_leaves_the_last_checkpoint() {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        return child(&mode);
    }
    let dir = scratch("read-only");
    let (path, weights, before) = first_checkpoint(&dir);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let outcomes = run_child(
        "a_read_only_folder_leaves_the_last_checkpoint",
        "readonly",
        &path,
        0,
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if outcomes.len() == 1 {
        // Root that cannot become another user writes anywhere: no folder is read-only
        // to it. The failing write is then the file-size limit's.
        eprintln!(
            "the folder could not be made read-only ({}); failing the write with RLIMIT_FSIZE",
            outcomes[0]
        );
        let outcomes = run_child(
            "a_read_only_folder_leaves_the_last_checkpoint",
            "fsize",
            &path,
            1024,
        );
        assert_reports(&outcomes, [&path, &weights], libc::EFBIG);
    } else {
        assert_reports(&outcomes, [&path, &weights], libc::EACCES);
    }
    assert_intact(&dir, &path, &weights, &before);
    std::fs::remove_dir_all(&dir).unwrap();
}
