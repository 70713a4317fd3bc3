//! Data-parallel `fit` without MPI: the ranks are threads here, joined by a communicator
//! of shared buffers that adds in rank order as MPI's reduction does, so the fast suite
//! checks what the training loop does with ranks (slices of each global batch, scaled
//! and summed gradients, reduced metrics and validation, averaged or pooled
//! BatchNormalization statistics, per-sample dropout, weights checked equal) against one
//! process on the whole batch. `convnet-cli`'s tests/distributed.rs runs the same over
//! MPI, with `mpirun`.

use convnet::collective::Communicator;
use convnet::layers::*;
use convnet::model::Input;
use convnet::train::*;
use convnet::ActivationFn;
use convnet::{sequential, Result, Tensor};
use std::sync::{Arc, Barrier, Mutex};

mod common;
use common::random;

/// Ranks that are threads of one process: each collective puts every rank's values in
/// its slot, and every rank then reads the same sum, made in rank order.
struct ThreadRanks {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

impl ThreadRanks {
    fn world(size: usize) -> Vec<ThreadRanks> {
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| ThreadRanks {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's values, once all have given theirs.
    fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        self.shared.slots.lock().unwrap()[self.rank] = mine;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().unwrap().clone();
        self.shared.barrier.wait();
        all
    }
}

impl Communicator for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn allreduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)).collect());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().fold(0f32, |s, r| s + r[i] as f32);
        }
        Ok(())
    }
    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let all = self.exchange(values.to_vec());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().fold(0.0, |s, r| s + r[i]);
        }
        Ok(())
    }
    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()> {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)).collect());
        for (v, r) in values.iter_mut().zip(&all[root]) {
            *v = *r as f32;
        }
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted with {code}", self.rank)
    }
}

/// Images of 8x8x2 and labels of 4 classes that the image's mean decides.
fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let x = random(&[n, 8, 8, 2], seed);
    let labels = (0..n)
        .map(|i| {
            let mean: f32 = x.data()[i * 128..(i + 1) * 128].iter().sum::<f32>() / 128.0;
            ((mean * 40.0).clamp(-1.99, 1.99) + 2.0).floor()
        })
        .collect();
    (x, Tensor::new(vec![n], labels).unwrap())
}

/// A small CNN with dropout, and a random flip and Gaussian noise where it has no
/// BatchNormalization (their draws are per sample index, so the equalities below hold
/// only if a sample's draw does not depend on its rank).
fn model(batch_norm: bool) -> CompiledModel {
    let mut dropout = Dropout::new(0.3);
    dropout.seed = Some(11);
    let mut model = if batch_norm {
        sequential![
            Input::new([8, 8, 2]),
            // No bias before BatchNormalization: its gradient is zero up to rounding,
            // which Adam would turn into full-size steps in any direction.
            Conv2D::new(6, (3, 3)).use_bias(false),
            BatchNormalization::new(),
            Activation::new(ActivationFn::Relu),
            MaxPooling2D::new((2, 2)),
            Flatten::new(),
            dropout,
            Dense::new(4).activation(ActivationFn::Softmax)
        ]
    } else {
        let mut flip = RandomFlip::new(FlipMode::Horizontal);
        flip.seed = Some(12);
        let mut noise = GaussianNoise::additive(0.1);
        noise.seed = Some(13);
        sequential![
            Input::new([8, 8, 2]),
            flip,
            Conv2D::new(6, (3, 3)).activation(ActivationFn::Relu),
            MaxPooling2D::new((2, 2)),
            Flatten::new(),
            noise,
            dropout,
            Dense::new(4).activation(ActivationFn::Softmax)
        ]
    }
    .unwrap();
    model.initialize_weights(5).unwrap();
    model
        .compile_named(
            Optimizer::adam(0.01),
            "sparse_categorical_crossentropy",
            &["accuracy"],
        )
        .unwrap()
}

fn options(batch: usize, communicator: Option<Arc<dyn Communicator>>, sync: bool) -> FitOptions {
    FitOptions {
        epochs: 2,
        batch_size: batch,
        verbose: 0,
        seed: Some(3),
        validation_split: 0.2,
        communicator,
        sync_batch_norm: sync,
        ..FitOptions::default()
    }
}

/// One process on the whole data: its history and final weights.
fn alone(n: usize, batch: usize, batch_norm: bool) -> (History, Vec<Tensor>) {
    let (x, y) = data(n, 1);
    let mut model = model(batch_norm);
    let history = model.fit(&[x], &[y], options(batch, None, false)).unwrap();
    (history, model.get_weights())
}

/// `ranks` threads training together: each rank's history and final weights.
fn together(
    ranks: usize,
    n: usize,
    batch: usize,
    batch_norm: bool,
    sync: bool,
) -> Vec<(History, Vec<Tensor>)> {
    let threads: Vec<_> = ThreadRanks::world(ranks)
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || {
                let (x, y) = data(n, 1);
                let mut model = model(batch_norm);
                // Only rank 0's initial weights count: the others start elsewhere.
                if comm.rank() > 0 {
                    model.initialize_weights(99).unwrap();
                }
                let comm: Arc<dyn Communicator> = Arc::new(comm);
                let history = model
                    .fit(&[x], &[y], options(batch, Some(comm), sync))
                    .unwrap();
                (history, model.get_weights())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn relative(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

fn assert_same(single: &(History, Vec<Tensor>), rank: &(History, Vec<Tensor>), what: &str) {
    for (key, values) in &single.0.history {
        let theirs = rank
            .0
            .get(key)
            .unwrap_or_else(|| panic!("{what}: no {key}"));
        for (a, b) in values.iter().zip(theirs) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                "{what}: {key} {theirs:?} against one process's {values:?}"
            );
        }
    }
    for (i, (a, b)) in rank.1.iter().zip(&single.1).enumerate() {
        let error = relative(a.data(), b.data());
        assert!(
            error <= 1e-5,
            "{what}: weight {i} is {error:e} from one process's"
        );
    }
}

#[test]
fn two_ranks_train_as_one_process_on_the_whole_batch() {
    // 100 samples: 80 to train in batches of 16 (five steps an epoch), 20 to validate.
    let single = alone(100, 16, false);
    let ranks = together(2, 100, 16, false, false);
    for (r, rank) in ranks.iter().enumerate() {
        assert_same(&single, rank, &format!("rank {r} of 2"));
        // Every rank ends with the same weights, bit for bit.
        for (a, b) in rank.1.iter().zip(&ranks[0].1) {
            assert_eq!(a.data(), b.data());
        }
    }
    let keys: Vec<&String> = single.0.history.keys().collect();
    assert_eq!(keys, ["accuracy", "loss", "val_accuracy", "val_loss"]);
}

#[test]
fn three_ranks_split_uneven_batches_as_one_process() {
    // 80 training samples in batches of 14: five batches of 14 split 5/5/4, and a last
    // one of 10 split 4/3/3.
    let single = alone(100, 14, false);
    for (r, rank) in together(3, 100, 14, false, false).iter().enumerate() {
        assert_same(&single, rank, &format!("rank {r} of 3"));
    }
}

#[test]
fn synchronized_batch_normalization_equals_one_process() {
    let single = alone(100, 16, true);
    for (r, rank) in together(2, 100, 16, true, true).iter().enumerate() {
        assert_same(&single, rank, &format!("rank {r} of 2, synchronized"));
    }
}

#[test]
fn per_rank_batch_normalization_differs_but_stays_the_same_on_every_rank() {
    // Each rank normalizes by its own slice (Keras's MirroredStrategy's default): not
    // the single process's numbers, but one model on every rank.
    let single = alone(100, 16, true);
    let ranks = together(2, 100, 16, true, false);
    let apart = relative(ranks[0].1[0].data(), single.1[0].data());
    assert!(
        apart > 1e-5,
        "per-rank statistics left the kernel where pooled ones do ({apart:e})"
    );
    for (a, b) in ranks[1].1.iter().zip(&ranks[0].1) {
        assert_eq!(a.data(), b.data());
    }
}

#[test]
fn batches_smaller_than_the_ranks_are_refused() {
    // 80 training samples in batches of 39: a last batch of 2 for 3 ranks.
    let threads: Vec<_> = ThreadRanks::world(3)
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || {
                let (x, y) = data(100, 1);
                let mut model = model(false);
                let comm: Arc<dyn Communicator> = Arc::new(comm);
                model
                    .fit(&[x], &[y], options(39, Some(comm), false))
                    .err()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    for t in threads {
        let message = t.join().unwrap();
        assert!(
            message.contains("batch of 2") && message.contains("3 ranks"),
            "{message}"
        );
    }
}

#[test]
fn backup_and_restore_is_refused_in_a_data_parallel_run() {
    let dir = std::env::temp_dir().join(format!("convnet-dp-backup-{}", std::process::id()));
    let threads: Vec<_> = ThreadRanks::world(2)
        .into_iter()
        .map(|comm| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let (x, y) = data(100, 1);
                let mut model = model(false);
                let comm: Arc<dyn Communicator> = Arc::new(comm);
                let mut options = options(16, Some(comm), false);
                options.callbacks = vec![Box::new(convnet::callbacks::BackupAndRestore::new(&dir))];
                model.fit(&[x], &[y], options).err().unwrap().to_string()
            })
        })
        .collect();
    for t in threads {
        let message = t.join().unwrap();
        assert!(message.contains("BackupAndRestore"), "{message}");
    }
    assert!(!dir.exists(), "a backup was written");
}
