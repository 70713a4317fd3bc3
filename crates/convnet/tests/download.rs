//! Downloading a named dataset: from a local HTTP server standing in for keras.datasets'
//! location, into `$HOME/.convnet/datasets`, once; and the error when no server answers.
//! One test function, because it sets process-wide environment variables.

use convnet::data::download::{download_fashion_mnist, FASHION_MNIST_FILES};
use convnet::data::load_idx_dataset;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves the files of `dir` over HTTP/1.1 until the test ends; counts the requests.
fn serve(dir: PathBuf) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            reader.read_line(&mut line).expect("request line");
            // The headers, up to the blank line.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let name = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let reply = match std::fs::read(dir.join(name)) {
                Ok(body) => [
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes(),
                    body,
                ]
                .concat(),
                Err(_) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
            };
            let _ = stream.write_all(&reply);
        }
    });
    (address, requests)
}

#[test]
fn fashion_mnist_is_downloaded_once_into_the_cache_and_failures_say_where_from() {
    let home = std::env::temp_dir().join(format!("convnet-download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-sample");
    let (url, requests) = serve(sample);
    std::env::set_var("HOME", &home);
    std::env::set_var("CONVNET_DATASETS_URL", &url);

    let dir = download_fashion_mnist().expect("downloads from the local server");
    assert_eq!(dir, home.join(".convnet/datasets/fashion-mnist"));
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    let data = load_idx_dataset(&dir).expect("the downloaded files load");
    assert_eq!(data.x_train.shape(), &[3000, 28, 28, 1]);
    assert!(FASHION_MNIST_FILES.iter().all(|f| dir.join(f).is_file()));
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .path()
        .to_string_lossy()
        .ends_with(".part")));

    // Already there: nothing is fetched again.
    download_fashion_mnist().expect("cached");
    assert_eq!(requests.load(Ordering::SeqCst), 4);

    // A missing file is an error naming the address, and leaves nothing half-written.
    std::fs::remove_dir_all(&home).unwrap();
    std::env::set_var("CONVNET_DATASETS_URL", format!("{url}/nowhere"));
    let message = download_fashion_mnist().unwrap_err().to_string();
    assert!(
        message.contains(&format!("{url}/nowhere/train-images-idx3-ubyte.gz")),
        "{message}"
    );
    let cache = home.join(".convnet/datasets/fashion-mnist");
    assert!(std::fs::read_dir(&cache).map_or(true, |mut d| d.next().is_none()));

    // No server at all: an error, quickly.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::env::set_var("CONVNET_DATASETS_URL", format!("http://{closed}"));
    let message = download_fashion_mnist().unwrap_err().to_string();
    assert!(message.contains("could not download"), "{message}");
    let _ = std::fs::remove_dir_all(&home);
}
